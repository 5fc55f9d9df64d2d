// The benchmark machine's description (see environment.h).
#include "bench/environment.h"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/strings.h"
#include "core/torch_compat.h"

namespace fluxtrain {

// stdout of a shell command ("" when it cannot run).
static std::string command_output(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return "";
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(p);
  return status == 0 ? out : "";
}

std::vector<GpuInfo> parse_nvidia_smi_gpus(const std::string& csv) {
  std::vector<GpuInfo> gpus;
  std::istringstream in(csv);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ls(line);
    std::string field;
    while (std::getline(ls, field, ',')) f.push_back(trim_whitespace(field));
    if (f.size() < 4 || f[0].empty()) continue;
    GpuInfo g;
    try {
      g.index = std::stoi(f[0]);
      g.memory_mib = std::stoll(f[3]);
    } catch (const std::exception&) {
      continue;
    }
    g.name = f[1];
    g.driver = f[2];
    gpus.push_back(g);
  }
  return gpus;
}

std::string parse_nvidia_smi_cuda_version(const std::string& banner) {
  const std::string tag = "CUDA Version:";
  const auto at = banner.find(tag);
  if (at == std::string::npos) return "";
  std::istringstream in(banner.substr(at + tag.size()));
  std::string v;
  in >> v;
  return v;
}

Environment collect_environment() {
  Environment e;
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) == 0) e.hostname = host;
  utsname u{};
  if (::uname(&u) == 0) e.os = fmt::format("{} {} {}", u.sysname, u.release, u.machine);
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      e.cpu_model = trim_whitespace(line.substr(line.find(':') + 1));
      break;
    }
  e.cpu_cores = std::thread::hardware_concurrency();
  std::ifstream mem("/proc/meminfo");
  while (std::getline(mem, line))
    if (line.rfind("MemTotal:", 0) == 0) {
      e.memory_bytes = std::atoll(line.substr(9).c_str()) * 1024;
      break;
    }
  e.gpus = parse_nvidia_smi_gpus(
      command_output("nvidia-smi --query-gpu=index,name,driver_version,memory.total "
                     "--format=csv,noheader,nounits"));
  if (!e.gpus.empty()) {
    e.driver = e.gpus[0].driver;
    e.cuda_driver = parse_nvidia_smi_cuda_version(command_output("nvidia-smi"));
  }
  e.cuda_runtime = compat::cuda_runtime_version();
  e.libtorch = compat::torch_version();
  e.fluxtrain_commit = FLUXTRAIN_COMMIT;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char stamp[40];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", &tm);
  e.started_at = stamp;
  return e;
}

std::string Environment::device_name(const std::string& description) const {
  if (description.rfind("cpu", 0) == 0)
    return "CPU: " + (cpu_model.empty() ? "unknown" : cpu_model);
  if (description.rfind("cuda", 0) == 0) {
    int index = 0;
    if (auto colon = description.find(':'); colon != std::string::npos)
      index = std::atoi(description.c_str() + colon + 1);
    // CUDA_VISIBLE_DEVICES renumbers devices; nvidia-smi does not.
    if (const char* vis = std::getenv("CUDA_VISIBLE_DEVICES"); vis && *vis) {
      std::vector<std::string> ids;
      std::stringstream ss(vis);
      std::string id;
      while (std::getline(ss, id, ',')) ids.push_back(trim_whitespace(id));
      if (index < static_cast<int>(ids.size()) && !ids[index].empty() &&
          std::isdigit(static_cast<unsigned char>(ids[index][0])))
        index = std::atoi(ids[index].c_str());
    }
    for (const auto& g : gpus)
      if (g.index == index) return g.name;
  }
  return description;
}

nlohmann::json Environment::to_json() const {
  nlohmann::json gpu_list = nlohmann::json::array();
  for (const auto& g : gpus)
    gpu_list.push_back(
        {{"index", g.index}, {"name", g.name}, {"driver", g.driver}, {"memory_mib", g.memory_mib}});
  return {{"hostname", hostname},
          {"os", os},
          {"cpu_model", cpu_model},
          {"cpu_cores", cpu_cores},
          {"memory_bytes", memory_bytes},
          {"gpus", gpu_list},
          {"driver", driver},
          {"cuda_driver", cuda_driver},
          {"cuda_runtime", cuda_runtime},
          {"libtorch", libtorch},
          {"fluxtrain_commit", fluxtrain_commit},
          {"started_at", started_at}};
}

}  // namespace fluxtrain
