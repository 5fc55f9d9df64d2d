// A run's directory, runs/<name>/<id>/: created once, its config.yaml (the configuration the run
// started with, plus a record of every resume appended as comments, so the file stays a valid
// config of the original run), and its files' names.
#pragma once
#include <string>

#include "train/train_state.h"

namespace fluxtrain {

// runs/<name>/<id>/ with id = YYYYMMDD-HHMMSS (suffix -2, -3 ... if taken); created.
std::string create_run_dir(const std::string& output_dir, const std::string& name);

// True when `dir` holds a run's own files (config.yaml or metrics.jsonl).
bool is_run_dir(const std::string& dir);

// The local time as "2026-12-01 10:22:03".
std::string local_time_text();

// Writes run_dir/config.yaml (a new run).
void write_run_config(const std::string& run_dir, const std::string& yaml);
// Appends to run_dir/config.yaml, as YAML comments, when the run was resumed, from where, and
// what the resume changed ("# resumed ... : no changes" when nothing).
void append_resume_record(const std::string& run_dir, const ResumeRecord& record);

}  // namespace fluxtrain
