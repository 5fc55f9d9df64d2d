// The benchmark's output files (see outputs.h).
#include "bench/outputs.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "bench/csv_report.h"
#include "bench/html_report.h"
#include "bench/json_report.h"

namespace fluxtrain {
namespace fs = std::filesystem;

static void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", tmp.string()));
  }
  fs::rename(tmp, path);
}

void write_bench_outputs(const BenchResults& results) {
  const fs::path dir = results.dir;
  write_atomically(dir / "runs_summary.csv", csv_text(results));
  write_atomically(dir / "results.json", results_json(results).dump(2) + "\n");
  write_atomically(dir / "report.html", report_html(results));
}

}  // namespace fluxtrain
