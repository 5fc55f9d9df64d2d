// Configuration schema, parsing and validation (see config.h).
#include "core/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "core/errors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

ConfigSchema& ConfigSchema::add(ConfigKey key) {
  if (index_.count(key.name)) throw std::logic_error("config key defined twice: " + key.name);
  index_[key.name] = keys_.size();
  keys_.push_back(std::move(key));
  return *this;
}

ConfigSchema& ConfigSchema::integer(const std::string& group, const std::string& name, int64_t def,
                                    const std::string& help, std::optional<double> min,
                                    std::optional<double> max) {
  return add({name, KeyType::kInt, std::to_string(def), help, group, {}, min, max});
}

ConfigSchema& ConfigSchema::real(const std::string& group, const std::string& name, double def,
                                 const std::string& help, std::optional<double> min,
                                 std::optional<double> max) {
  return add({name, KeyType::kFloat, fmt::format("{}", def), help, group, {}, min, max});
}

ConfigSchema& ConfigSchema::boolean(const std::string& group, const std::string& name, bool def,
                                    const std::string& help) {
  return add({name, KeyType::kBool, def ? "true" : "false", help, group});
}

ConfigSchema& ConfigSchema::string(const std::string& group, const std::string& name,
                                   const std::string& def, const std::string& help) {
  return add({name, KeyType::kString, def, help, group});
}

ConfigSchema& ConfigSchema::choice(const std::string& group, const std::string& name,
                                   const std::string& def, std::vector<std::string> choices,
                                   const std::string& help) {
  return add({name, KeyType::kChoice, def, help, group, std::move(choices)});
}

ConfigSchema& ConfigSchema::path(const std::string& group, const std::string& name,
                                 const std::string& help, bool must_exist) {
  ConfigKey k{name, KeyType::kPath, "", help, group};
  k.must_exist = must_exist;
  return add(std::move(k));
}

ConfigSchema& ConfigSchema::list(const std::string& group, const std::string& name,
                                 const std::string& help) {
  return add({name, KeyType::kList, "", help, group});
}

ConfigSchema& ConfigSchema::operational(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    auto it = index_.find(n);
    if (it == index_.end()) throw std::logic_error("operational: no config key " + n);
    keys_[it->second].affects_results = false;
  }
  return *this;
}

const ConfigKey* ConfigSchema::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

static std::string type_name(const ConfigKey& k) {
  switch (k.type) {
    case KeyType::kInt:
      return "INT";
    case KeyType::kFloat:
      return "FLOAT";
    case KeyType::kBool:
      return "BOOL";
    case KeyType::kString:
      return "TEXT";
    case KeyType::kPath:
      return "PATH";
    case KeyType::kList:
      return "LIST";
    case KeyType::kChoice: {
      std::string s;
      for (const auto& c : k.choices) s += (s.empty() ? "" : "|") + c;
      return s;
    }
  }
  return "?";
}

std::string ConfigSchema::help() const {
  std::string out;
  std::string group = "\x01";
  for (const auto& k : keys_) {
    if (k.group != group) {
      group = k.group;
      out += fmt::format("\n{}:\n", group.empty() ? "options" : group);
    }
    std::string left = fmt::format("  --{} {}", k.name, type_name(k));
    std::string def = k.default_value.empty() ? "" : fmt::format(" [default: {}]", k.default_value);
    out += fmt::format("{:<44} {}{}\n", left, k.help, def);
  }
  return out;
}

Config::Config(ConfigSchema schema) : schema_(std::move(schema)) {
  for (const auto& k : schema_.keys()) {
    if (k.type == KeyType::kList) {
      values_[k.name] = std::vector<std::string>();
    } else if (k.type == KeyType::kPath ||
               (k.type == KeyType::kString && k.default_value.empty())) {
      values_[k.name] = std::string();
    } else {
      values_[k.name] = parse(k, k.default_value, "default");
    }
  }
}

static std::string closest_key(const ConfigSchema& schema, const std::string& name) {
  // Suggest the key with the smallest edit distance (helps with typos such as --learning_rate).
  auto dist = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = std::max<size_t>(1, name.size() / 3) + 1;  // only close matches
  for (const auto& k : schema.keys()) {
    size_t d = dist(name, k.name);
    if (d < best_d) best_d = d, best = k.name;
  }
  return best;
}

ConfigValue Config::parse(const ConfigKey& k, const std::string& text,
                          const std::string& origin) const {
  auto bad = [&](const std::string& expected) -> UserError {
    return UserError(
        fmt::format("{}: bad value '{}' for '{}': expected {}", origin, text, k.name, expected));
  };
  auto check_range = [&](double v) {
    if ((k.min && v < *k.min) || (k.max && v > *k.max)) {
      std::string range = k.min && k.max ? fmt::format("between {} and {}", *k.min, *k.max)
                          : k.min        ? fmt::format(">= {}", *k.min)
                                         : fmt::format("<= {}", *k.max);
      throw bad("a number " + range);
    }
  };
  switch (k.type) {
    case KeyType::kInt: {
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || errno == ERANGE) {
        // Accept integral floats in scientific notation such as 1e6.
        double d = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || d != std::floor(d) || std::abs(d) > 9.0e18)
          throw bad("an integer");
        v = static_cast<long long>(d);
      }
      check_range(static_cast<double>(v));
      return static_cast<int64_t>(v);
    }
    case KeyType::kFloat: {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !std::isfinite(v)) throw bad("a number");
      check_range(v);
      return v;
    }
    case KeyType::kBool: {
      std::string t = text;
      for (auto& c : t) c = static_cast<char>(std::tolower(c));
      if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
      if (t == "false" || t == "0" || t == "no" || t == "off") return false;
      throw bad("true or false");
    }
    case KeyType::kChoice: {
      for (const auto& c : k.choices)
        if (c == text) return text;
      throw bad("one of " + type_name(k));
    }
    case KeyType::kPath:
      if (k.must_exist && !text.empty() && !fs::exists(text))
        throw UserError(fmt::format("{}: '{}' for '{}' does not exist", origin, text, k.name));
      return text;
    case KeyType::kString:
      return text;
    case KeyType::kList: {
      std::vector<std::string> items;
      const auto first = text.find_first_not_of(" \t");
      if (first == std::string::npos) return items;
      if (text[first] != '[') return std::vector<std::string>{text};
      YAML::Node node;
      try {
        node = YAML::Load(text);
      } catch (const YAML::Exception&) {
        throw bad("a list such as [\"a\", \"b\"]");
      }
      if (!node.IsSequence()) throw bad("a list such as [\"a\", \"b\"]");
      for (const auto& item : node) {
        if (!item.IsScalar()) throw bad("a list of plain values");
        items.push_back(item.as<std::string>());
      }
      return items;
    }
  }
  throw std::logic_error("unhandled key type");
}

void Config::set(const std::string& key, const std::string& text, const std::string& origin) {
  const ConfigKey* k = schema_.find(key);
  if (!k) {
    std::string hint = closest_key(schema_, key);
    user_error("{}: unknown key '{}'{}", origin, key,
               hint.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", hint));
  }
  values_[key] = parse(*k, text, origin);
  explicitly_set_[key] = true;
}

void Config::append(const std::string& key, const std::string& text, const std::string& origin) {
  const ConfigKey* k = schema_.find(key);
  if (!k || k->type != KeyType::kList) return set(key, text, origin);
  std::vector<std::string> items = list(key);
  set(key, text, origin);
  auto& now = std::get<std::vector<std::string>>(values_[key]);
  items.insert(items.end(), now.begin(), now.end());
  now = std::move(items);
}

void Config::load_yaml_string(const std::string& yaml, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    user_error("{}: not valid YAML: {}", origin, e.what());
  }
  if (root.IsNull()) return;
  if (!root.IsMap()) user_error("{}: expected a mapping of key: value at the top level", origin);
  for (const auto& item : root) {
    std::string key = item.first.as<std::string>();
    std::string where = fmt::format("{} (line {})", origin, item.first.Mark().line + 1);
    const ConfigKey* k = schema_.find(key);
    if (k && k->type == KeyType::kList && item.second.IsSequence()) {
      std::vector<std::string> items;
      for (const auto& v : item.second) {
        if (!v.IsScalar()) user_error("{}: key '{}' must be a list of plain values", where, key);
        items.push_back(v.as<std::string>());
      }
      values_[key] = items;
      explicitly_set_[key] = true;
      continue;
    }
    if (!item.second.IsScalar() && !item.second.IsNull())
      user_error("{}: key '{}' must be a single value, not a list or mapping", where, key);
    set(key, item.second.IsNull() ? std::string() : item.second.as<std::string>(), where);
  }
}

void Config::load_yaml_file(const std::string& path) {
  if (!fs::exists(path)) user_error("config file '{}' does not exist", path);
  std::ifstream in(path);
  if (!in) user_error("config file '{}' cannot be read", path);
  std::stringstream ss;
  ss << in.rdbuf();
  load_yaml_string(ss.str(), path);
}

const ConfigValue& Config::get(const std::string& key, KeyType want) const {
  const ConfigKey* k = schema_.find(key);
  if (!k) throw std::logic_error("config key not in schema: " + key);
  bool ok = k->type == want || (want == KeyType::kString &&
                                (k->type == KeyType::kChoice || k->type == KeyType::kPath));
  if (!ok) throw std::logic_error("config key read with the wrong type: " + key);
  return values_.at(key);
}

int64_t Config::i(const std::string& key) const {
  return std::get<int64_t>(get(key, KeyType::kInt));
}
double Config::f(const std::string& key) const {
  return std::get<double>(get(key, KeyType::kFloat));
}
bool Config::b(const std::string& key) const {
  return std::get<bool>(get(key, KeyType::kBool));
}
const std::string& Config::s(const std::string& key) const {
  return std::get<std::string>(get(key, KeyType::kString));
}
const std::vector<std::string>& Config::list(const std::string& key) const {
  return std::get<std::vector<std::string>>(get(key, KeyType::kList));
}
bool Config::differs_from_default(const std::string& key) const {
  const Config defaults(schema_);
  return !(value(key) == defaults.value(key));
}

const ConfigValue& Config::value(const std::string& key) const {
  if (!schema_.find(key)) throw std::logic_error("config key not in schema: " + key);
  return values_.at(key);
}

// A list as a YAML flow sequence of double-quoted strings.
static std::string flow_list(const std::vector<std::string>& items) {
  YAML::Emitter out;
  out << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : items) out << YAML::DoubleQuoted << s;
  out << YAML::EndSeq;
  return out.c_str();
}

std::string Config::text(const std::string& key) const {
  const auto& v = value(key);
  if (auto p = std::get_if<int64_t>(&v)) return std::to_string(*p);
  if (auto d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  if (auto b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto l = std::get_if<std::vector<std::string>>(&v)) return flow_list(*l);
  return std::get<std::string>(v);
}

std::string Config::to_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string group = "\x01";
  for (const auto& k : schema_.keys()) {
    if (k.group != group) {
      group = k.group;
      out << YAML::Comment(group);
    }
    out << YAML::Key << k.name << YAML::Value;
    const auto& v = values_.at(k.name);
    if (auto p = std::get_if<int64_t>(&v))
      out << *p;
    else if (auto d = std::get_if<double>(&v))
      out << fmt::format("{}", *d);
    else if (auto b = std::get_if<bool>(&v))
      out << (*b ? "true" : "false");
    else if (auto l = std::get_if<std::vector<std::string>>(&v)) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : *l) out << YAML::DoubleQuoted << item;
      out << YAML::EndSeq;
    } else
      out << YAML::DoubleQuoted << std::get<std::string>(v);
  }
  out << YAML::EndMap;
  // yaml-cpp puts a comment that follows a value on the value's line ("override: false  # model");
  // each group's heading goes on a line of its own, before the group's first key.
  std::set<std::string> groups;
  for (const auto& k : schema_.keys()) groups.insert(k.group);
  std::istringstream in(out.c_str());
  std::string text, line;
  while (std::getline(in, line)) {
    const auto at = line.rfind("  # ");
    if (at != std::string::npos && at > 0 && groups.count(line.substr(at + 4))) {
      text += line.substr(0, at) + "\n" + line.substr(at + 2) + "\n";
    } else {
      text += line + "\n";
    }
  }
  return text;
}

CommandLine split_command_line(const std::vector<std::string>& args,
                               const std::function<bool(const std::string&)>& is_switch) {
  CommandLine out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      continue;
    }
    if (a == "--config") {
      if (i + 1 >= args.size()) user_error("--config: expected a YAML file after it");
      out.config_files.push_back(args[++i]);
      continue;
    }
    if (a.rfind("--config=", 0) == 0) {
      out.config_files.push_back(a.substr(9));
      continue;
    }
    if (a.rfind("--", 0) != 0 || a.size() < 3)
      user_error("unexpected argument '{}': options are --key value (see --help)", a);
    std::string key = a.substr(2), value;
    const auto eq = key.find('=');
    const bool bare = eq == std::string::npos;
    if (!bare) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    std::replace(key.begin(), key.end(), '-', '_');
    if (bare) {
      const bool next_is_value = i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0;
      if (key.rfind("no_", 0) == 0 && is_switch(key.substr(3)) && !next_is_value) {
        key = key.substr(3);
        value = "false";
      } else if (!next_is_value && is_switch(key)) {
        value = "true";
      } else if (next_is_value) {
        value = args[++i];
      } else {
        user_error("{}: expected a value after it", a);
      }
    }
    out.flags.emplace_back(key, value);
  }
  return out;
}

bool parse_args(Config& config, const std::vector<std::string>& args) {
  // Unknown keys count as switches here so that a bare unknown --key is reported as unknown.
  auto cl = split_command_line(args, [&](const std::string& key) {
    const ConfigKey* k = config.schema().find(key);
    return !k || k->type == KeyType::kBool;
  });
  if (cl.help) return false;
  // Files first, so that flags override them whatever their order.
  for (const auto& f : cl.config_files) config.load_yaml_file(f);
  std::set<std::string> seen;
  for (const auto& [key, value] : cl.flags) {
    if (seen.insert(key).second)
      config.set(key, value, "--" + key);
    else
      config.append(key, value, "--" + key);
  }
  return true;
}

}  // namespace fluxtrain
