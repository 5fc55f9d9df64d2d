// Config: defaults, YAML, flags, and the one-line errors for unknown keys and bad values.
#include "core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/errors.h"
#include "test_util.h"

using namespace fluxtrain;

static ConfigSchema schema() {
  ConfigSchema s;
  s.integer("train", "steps", 100, "steps", 1)
      .real("train", "lr", 1e-4, "learning rate", 0.0)
      .boolean("train", "ema", false, "use EMA")
      .choice("train", "schedule", "constant", {"constant", "cosine"}, "lr schedule")
      .string("run", "name", "default", "run name")
      .path("run", "resume", "checkpoint", true);
  return s;
}

using fluxtrain::testing::error_of;

TEST(Config, DefaultsFileAndFlagsInOrder) {
  fluxtrain::testing::TempDir tmp;
  auto path = tmp.path() / "cfg.yaml";
  std::ofstream(path) << "steps: 7\nlr: 0.5\nname: fromfile\n";
  Config c(schema());
  EXPECT_EQ(c.i("steps"), 100);
  ASSERT_TRUE(
      parse_args(c, {"--lr", "2e-3", "--config", path.string(), "--ema", "--schedule=cosine"}));
  EXPECT_EQ(c.i("steps"), 7);
  EXPECT_DOUBLE_EQ(c.f("lr"), 2e-3);  // the flag wins over the file whatever the order
  EXPECT_TRUE(c.b("ema"));
  EXPECT_EQ(c.s("schedule"), "cosine");
  EXPECT_EQ(c.s("name"), "fromfile");
  EXPECT_TRUE(c.is_set("steps"));
  EXPECT_FALSE(c.is_set("resume"));
  ASSERT_TRUE(parse_args(c, {"--no-ema", "--steps", "1e3"}));
  EXPECT_FALSE(c.b("ema"));
  EXPECT_EQ(c.i("steps"), 1000);
  EXPECT_FALSE(parse_args(c, {"--help"}));
}

TEST(Config, ErrorsNameKeyAndValue) {
  Config c(schema());
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--stepz", "3"});
            }),
            "--stepz: unknown key 'stepz' (did you mean 'steps'?)");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--steps", "abc"});
            }),
            "--steps: bad value 'abc' for 'steps': expected an integer");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--steps", "0"});
            }),
            "--steps: bad value '0' for 'steps': expected a number >= 1");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--schedule", "cosin"});
            }),
            "--schedule: bad value 'cosin' for 'schedule': expected one of constant|cosine");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--ema", "maybe"});
            }),
            "--ema: bad value 'maybe' for 'ema': expected true or false");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--resume", "/nonexistent/ckpt"});
            }),
            "--resume: '/nonexistent/ckpt' for 'resume' does not exist");
  EXPECT_EQ(error_of([&] {
              parse_args(c, {"--config", "/nonexistent.yaml"});
            }),
            "config file '/nonexistent.yaml' does not exist");
  EXPECT_EQ(error_of([&] { parse_args(c, {"positional"}); }),
            "unexpected argument 'positional': options are --key value (see --help)");
  EXPECT_EQ(error_of([&] { c.load_yaml_string("steps: 3\nfoo: 1\n", "x.yaml"); }),
            "x.yaml (line 2): unknown key 'foo'");
  EXPECT_EQ(error_of([&] { c.load_yaml_string("steps: [1, 2]\n", "x.yaml"); }),
            "x.yaml (line 1): key 'steps' must be a single value, not a list or mapping");
  EXPECT_NE(error_of([&] {
              c.load_yaml_string("steps: : :\n  - [", "x.yaml");
            }).find("x.yaml: not valid YAML"),
            std::string::npos);
}

TEST(Config, YamlRoundTrip) {
  Config c(schema());
  parse_args(c, {"--lr", "0.25", "--name", "a: b"});
  Config d(schema());
  d.load_yaml_string(c.to_yaml(), "saved");
  EXPECT_DOUBLE_EQ(d.f("lr"), 0.25);
  EXPECT_EQ(d.s("name"), "a: b");
  EXPECT_EQ(d.to_yaml(), c.to_yaml());
  // Each group's heading is a line of its own above its first key, not a comment after the
  // previous group's last value.
  EXPECT_EQ(c.to_yaml(),
            "# train\nsteps: 100\nlr: 0.25\nema: false\nschedule: \"constant\"\n# run\n"
            "name: \"a: b\"\nresume: \"\"\n");
}

TEST(Config, CommandLineSplitting) {
  auto is_switch = [](const std::string& k) { return k == "ema"; };
  auto cl = split_command_line({"--config", "x.yaml", "-h"}, is_switch);
  EXPECT_TRUE(cl.help);
  EXPECT_EQ(cl.config_files, std::vector<std::string>{"x.yaml"});
  using KV = std::pair<std::string, std::string>;
  // "--d" is followed by another option: d is no switch, but its value would be "--e".
  EXPECT_EQ(error_of([&] {
              split_command_line({"--d", "--e"}, is_switch);
            }),
            "--d: expected a value after it");
  cl = split_command_line({"--a-b", "1", "--c=2", "--ema", "--no-ema", "--e", "v"}, is_switch);
  EXPECT_EQ(
      cl.flags,
      (std::vector<KV>{{"a_b", "1"}, {"c", "2"}, {"ema", "true"}, {"ema", "false"}, {"e", "v"}}));
  EXPECT_EQ(error_of([&] { split_command_line({"--config"}, is_switch); }),
            "--config: expected a YAML file after it");
  // A bare unknown key is reported as unknown, not as missing its value.
  Config c(schema());
  EXPECT_EQ(error_of([&] { parse_args(c, {"--frobnicate"}); }),
            "--frobnicate: unknown key 'frobnicate'");
}

TEST(Config, ListsFromYamlSequencesFlowListsAndSingleItems) {
  ConfigSchema s = schema();
  s.list("run", "prompts", "prompts");
  Config c(s);
  EXPECT_TRUE(c.list("prompts").empty());
  EXPECT_EQ(c.text("prompts"), "[]");
  c.load_yaml_string("prompts:\n  - a red circle, on the left\n  - \"b\"\n", "run.yaml");
  EXPECT_EQ(c.list("prompts"), (std::vector<std::string>{"a red circle, on the left", "b"}));
  EXPECT_TRUE(c.is_set("prompts"));
  // A flag: a flow sequence, or one item (commas and all), or "" for none.
  c.set("prompts", R"(["x, y", 'z'])", "--prompts");
  EXPECT_EQ(c.list("prompts"), (std::vector<std::string>{"x, y", "z"}));
  c.set("prompts", "one prompt, with a comma", "--prompts");
  EXPECT_EQ(c.list("prompts"), (std::vector<std::string>{"one prompt, with a comma"}));
  c.set("prompts", "", "--prompts");
  EXPECT_TRUE(c.list("prompts").empty());
  EXPECT_EQ(error_of([&] { c.set("prompts", "[a, [b]]", "--prompts"); }),
            "--prompts: bad value '[a, [b]]' for 'prompts': expected a list of plain values");
  // The saved config round-trips, and text() is what a flag would take.
  c.set("prompts", R"(["p \"q\"", "r"])", "--prompts");
  Config back(s);
  back.load_yaml_string(c.to_yaml(), "config.yaml");
  EXPECT_EQ(back.list("prompts"), c.list("prompts"));
  Config again(s);
  again.set("prompts", c.text("prompts"), "--prompts");
  EXPECT_EQ(again.value("prompts"), c.value("prompts"));
  EXPECT_EQ(error_of([&] { c.load_yaml_string("name: [a]\n", "run.yaml"); }),
            "run.yaml (line 1): key 'name' must be a single value, not a list or mapping");
}

TEST(Config, OperationalKeysAreMarked) {
  ConfigSchema s = schema();
  EXPECT_TRUE(s.find("steps")->affects_results);
  s.operational({"name"});
  EXPECT_FALSE(s.find("name")->affects_results);
  EXPECT_TRUE(s.find("lr")->affects_results);
  EXPECT_THROW(s.operational({"nope"}), std::logic_error);
}
