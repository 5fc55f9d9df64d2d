// fluxtrain entry point: dispatches to one subcommand; user errors exit with code 2.
#include "core/errors.h"

#include <cstdio>

int main(int argc, char** argv) {
  std::fprintf(stderr, "fluxtrain: not yet\n");
  return 2;
}
