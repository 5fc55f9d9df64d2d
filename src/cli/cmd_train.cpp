// `fluxtrain train`: parse the configuration, run the trainer, print the outcome.
#include <cstdio>

#include "cli/commands.h"
#include "core/config.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace fluxtrain {

int cmd_train(const Args& args) {
  Config cfg(train_schema());
  if (!parse_args(cfg, args)) {
    std::printf("usage: fluxtrain train [--config file.yaml] [--key value ...]\n%s",
                cfg.schema().help().c_str());
    return 0;
  }
  install_stop_handlers();
  auto r = train(cfg);
  std::printf("run: %s\n", r.run_dir.c_str());
  std::printf("steps: %lld, last loss: %.5f", static_cast<long long>(r.steps), r.last_loss);
  if (r.val_loss) std::printf(", validation loss: %.5f (best %.5f)", *r.val_loss, *r.best_val_loss);
  std::printf("\n");
  if (r.eval.contains("colour"))
    std::printf(
        "held-out captions: colour %.1f%%, position %.1f%%, shape %.1f%% (all three %.1f%%)\n",
        100 * r.eval.value("colour", 0.0), 100 * r.eval.value("position", 0.0),
        100 * r.eval.value("shape", 0.0), 100 * r.eval.value("all", 0.0));
  if (r.eval.contains("grid") && !r.eval.contains("colour"))
    std::printf("samples: %s\n", r.eval["grid"].get<std::string>().c_str());
  if (r.reached_target) std::printf("target validation loss reached\n");
  return r.interrupted ? 130 : 0;
}

}  // namespace fluxtrain
