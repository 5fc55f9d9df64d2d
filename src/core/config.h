// Configuration: a schema of typed keys per command, filled from defaults, a YAML file
// (--config) and --key value flags, in that order. Every YAML key is also a flag.
// Unknown keys and bad values are UserErrors that name the key, the value and what was expected.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace fluxtrain {

enum class KeyType { kInt, kFloat, kBool, kString, kChoice, kPath, kList };

struct ConfigKey {
  std::string name;
  KeyType type = KeyType::kString;
  std::string default_value;  // text form; "" for an unset optional string/path
  std::string help;
  std::string group;                 // section in --help and in the saved config
  std::vector<std::string> choices;  // for kChoice
  std::optional<double> min, max;    // for kInt / kFloat (inclusive)
  bool must_exist = false;           // for kPath: the file or directory must exist when set
  // False for keys that change how a run is carried out but not what it computes (device,
  // threads, logging, checkpoint intervals): a resumed run may change those freely.
  bool affects_results = true;
};

class ConfigSchema {
 public:
  ConfigSchema& add(ConfigKey key);
  // Shorthands.
  ConfigSchema& integer(const std::string& group, const std::string& name, int64_t def,
                        const std::string& help, std::optional<double> min = std::nullopt,
                        std::optional<double> max = std::nullopt);
  ConfigSchema& real(const std::string& group, const std::string& name, double def,
                     const std::string& help, std::optional<double> min = std::nullopt,
                     std::optional<double> max = std::nullopt);
  ConfigSchema& boolean(const std::string& group, const std::string& name, bool def,
                        const std::string& help);
  ConfigSchema& string(const std::string& group, const std::string& name, const std::string& def,
                       const std::string& help);
  ConfigSchema& choice(const std::string& group, const std::string& name, const std::string& def,
                       std::vector<std::string> choices, const std::string& help);
  ConfigSchema& path(const std::string& group, const std::string& name, const std::string& help,
                     bool must_exist);
  // A list of strings: a YAML sequence, or on the command line a flow sequence ('["a", "b"]') or
  // a single item ('a'); "" is the empty list. Default: empty.
  ConfigSchema& list(const std::string& group, const std::string& name, const std::string& help);
  // Marks keys as not affecting results (see ConfigKey::affects_results); logic_error if unknown.
  ConfigSchema& operational(const std::vector<std::string>& names);

  const ConfigKey* find(const std::string& name) const;
  const std::vector<ConfigKey>& keys() const { return keys_; }
  // Help text: one line per key, grouped.
  std::string help() const;

 private:
  std::vector<ConfigKey> keys_;
  std::map<std::string, size_t> index_;
};

using ConfigValue = std::variant<int64_t, double, bool, std::string, std::vector<std::string>>;

class Config {
 public:
  explicit Config(ConfigSchema schema);  // every key at its default

  // Parse `text` for `key` and store it; `origin` names where it came from for error messages
  // ("--lr", "run.yaml").
  void set(const std::string& key, const std::string& text, const std::string& origin);
  // For a list key: parses `text` as set() does and appends its items to the current value.
  void append(const std::string& key, const std::string& text, const std::string& origin);
  // Load a flat YAML mapping of key: value.
  void load_yaml_file(const std::string& path);
  void load_yaml_string(const std::string& yaml, const std::string& origin);

  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  bool b(const std::string& key) const;
  const std::string& s(const std::string& key) const;
  const std::vector<std::string>& list(const std::string& key) const;
  const ConfigValue& value(const std::string& key) const;
  // The value as it would appear on the command line ("3e-4", "true", "[\"a\", \"b\"]").
  std::string text(const std::string& key) const;
  bool has(const std::string& key) const { return schema_.find(key) != nullptr; }
  // True when a key was set by a file or flag rather than left at its default.
  bool is_set(const std::string& key) const { return explicitly_set_.count(key) > 0; }
  // Whether the key's value differs from its default (a saved configuration sets every key, so
  // this, not is_set, says what a user chose).
  bool differs_from_default(const std::string& key) const;

  std::string to_yaml() const;  // resolved config, grouped, with every key
  const ConfigSchema& schema() const { return schema_; }

 private:
  const ConfigValue& get(const std::string& key, KeyType want) const;
  ConfigValue parse(const ConfigKey& key, const std::string& text, const std::string& origin) const;

  ConfigSchema schema_;
  std::map<std::string, ConfigValue> values_;
  std::map<std::string, bool> explicitly_set_;
};

// Command-line arguments split into --config files and --key value flags (keys with '-' turned
// into '_'). A bare --key (last, or before another --option) is "true" and a bare --no-key
// "false" when is_switch(key); otherwise a bare --key is an error. UserError for positional
// arguments and a --config without a file.
struct CommandLine {
  bool help = false;  // --help or -h seen
  std::vector<std::string> config_files;
  std::vector<std::pair<std::string, std::string>> flags;  // (key, value) in order
};
CommandLine split_command_line(const std::vector<std::string>& args,
                               const std::function<bool(const std::string&)>& is_switch);

// Parse `args` (everything after the subcommand): --config FILE, --key value, --key=value,
// --flag (bool true), --no-flag (bool false). A list key given more than once collects the items
// of every occurrence (--lora a.safetensors --lora b.safetensors:0.5). Returns false when
// --help / -h was asked for.
// Positional arguments are an error.
bool parse_args(Config& config, const std::vector<std::string>& args);

}  // namespace fluxtrain
