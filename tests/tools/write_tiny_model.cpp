// write_tiny_model DIR [diffusers|bfl] [dev|schnell] [SEED]: the tests' tiny FLUX.1 model
// (tests/fixtures/flux_repo_fixture.h: the real files, names and configs, shapes scaled down)
// written to DIR, for benchmarks and trying commands by hand without a 30 GB download:
//   build/write_tiny_model /tmp/FLUX.1-tiny && fluxtrain sample --model /tmp/FLUX.1-tiny ...
#include <cstdio>
#include <exception>
#include <string>

#include "fixtures/flux_repo_fixture.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 5) {
    std::fprintf(stderr, "usage: write_tiny_model DIR [diffusers|bfl] [dev|schnell] [SEED]\n");
    return 2;
  }
  const std::string layout = argc > 2 ? argv[2] : "diffusers";
  const std::string kind = argc > 3 ? argv[3] : "dev";
  if ((layout != "diffusers" && layout != "bfl") || (kind != "dev" && kind != "schnell")) {
    std::fprintf(stderr, "write_tiny_model: expected diffusers|bfl and dev|schnell\n");
    return 2;
  }
  try {
    const uint64_t seed = argc > 4 ? std::stoull(argv[4]) : 1;
    const std::string t = fluxtrain::fixtures::write_tiny_flux_repo(
        argv[1],
        layout == "bfl" ? fluxtrain::fixtures::RepoLayout::kBfl
                        : fluxtrain::fixtures::RepoLayout::kDiffusers,
        kind == "dev", seed);
    std::printf("%s\n", t.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_tiny_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
