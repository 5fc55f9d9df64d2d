// fluxtrain entry point: dispatches to one subcommand; user errors are one line, exit code 2.
#include <c10/util/Exception.h>

#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/errors.h"
#include "core/torch_compat.h"

using namespace fluxtrain;

static const char* kUsage =
    "fluxtrain: train, fine-tune, sample and benchmark FLUX.1 text-to-image models\n"
    "\n"
    "usage: fluxtrain <command> [--config file.yaml] [--key value ...]\n"
    "\n"
    "commands:\n"
    "  train    train a FLUX transformer (flow matching) and evaluate it\n"
    "  prepare  encode a dataset once (VAE latents, T5 + CLIP text) into a cache for training\n"
    "  sample   generate images from a checkpoint and prompts\n"
    "  info     parameters, dtypes and memory of a model preset or checkpoint\n"
    "  bench    sweep training or sampling settings: images/s, step time, MFU, memory, cost\n"
    "  convert  a FLUX transformer (or a checkpoint's) to BFL or diffusers form, or another dtype\n"
    "\n"
    "`fluxtrain <command> --help` lists every key of a command.\n";

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  Args args(argv + 2, argv + argc);
  try {
    if (cmd == "train") return cmd_train(args);
    if (cmd == "sample") return cmd_sample(args);
    if (cmd == "info") return cmd_info(args);
    if (cmd == "bench") return cmd_bench(args);
    if (cmd == "convert") return cmd_convert(args);
    if (cmd == "prepare") return cmd_prepare(args);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (cmd == "--version" || cmd == "version") {
      std::printf("fluxtrain %s (libtorch %s)\n", FLUXTRAIN_COMMIT,
                  compat::torch_version().c_str());
      return 0;
    }
    std::fprintf(stderr,
                 "fluxtrain: unknown command '%s': expected train, prepare, sample, convert, info "
                 "or bench\n",
                 cmd.c_str());
    return 2;
  } catch (const UserError& e) {
    std::fprintf(stderr, "fluxtrain %s: error: %s\n", cmd.c_str(), e.what());
    return 2;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "fluxtrain %s: internal error (libtorch): %s\n", cmd.c_str(),
                 e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fluxtrain %s: internal error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
