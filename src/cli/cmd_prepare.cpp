// `fluxtrain prepare`: a dataset encoded once into a latent cache (see train/prepare.h).
#include <cstdio>

#include "cli/commands.h"
#include "core/config.h"
#include "train/prepare.h"

namespace fluxtrain {

int cmd_prepare(const Args& args) {
  Config cfg(prepare_schema());
  if (!parse_args(cfg, args)) {
    std::printf(
        "usage: fluxtrain prepare --model PATH --data DATA --out CACHE [--key value ...]\n%s",
        cfg.schema().help().c_str());
    return 0;
  }
  const PrepareResult r = prepare_cache(PrepareOptions::from_config(cfg));
  std::printf("cache: %s\n", r.dir.c_str());
  std::printf(
      "examples: %lld train, %lld validation; %lld captions; %lld shards written, %lld "
      "already done; %.1f images/s\n",
      static_cast<long long>(r.train), static_cast<long long>(r.validation),
      static_cast<long long>(r.captions), static_cast<long long>(r.shards_written),
      static_cast<long long>(r.shards_skipped), r.images_per_s);
  if (r.report->count() > 0)
    std::printf("unusable data: %lld (listed in %s/data_report.json)\n",
                static_cast<long long>(r.report->count()), r.dir.c_str());
  return 0;
}

}  // namespace fluxtrain
