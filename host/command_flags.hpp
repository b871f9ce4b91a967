// Flag parsing shared by the commands: train (host/cli.cpp), `eval` and `sample`
// (host/commands.hpp). Every bad value is an InputError (or a CLI11 ParseError) whose one line
// names the flag and quotes the text the user typed.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "host/dataset.hpp"

namespace rbm {

// Call after adding app's options and before parsing: a value may not be empty, and an option
// given twice parses (reject_repeated_flags then refuses it with a plain message instead of
// CLI11's "At Most 1 required but received 2").
void prepare_flags(CLI::App& app);

// InputError "FLAG given twice" for the first of app's options given more than once.
void reject_repeated_flags(const CLI::App& app);

// CLI11's message for a parse error, in plain words where it has none: "--iters: no value given"
// for "--iters: 1 required N missing" (a flag last on the line), and the
// words it did not expect in the order they were given (CLI11 parses them reversed).
std::string parse_error_text(const CLI::ParseError& error);

// "--out: empty value" for the first argument (before a "--") that gives one of app's flags an
// empty value after '=' (--out=, as a script's --out=$DIR writes it with DIR unset); nullopt when
// none does. A word that is a flag's value (--out --x=) is not looked at. CLI11 would take the
// next argument as the value instead: --out= --visible-bias wrote the run into a directory named
// --visible-bias, without visible biases. Checked before parsing.
std::optional<std::string> empty_inline_value(const CLI::App& app,
                                              const std::vector<std::string>& args);

// prepare_flags, then parses args (in order) into app and reject_repeated_flags. Returns the exit
// code when the command should stop now: 0 after --help, 2 after a bad flag (one line on stderr
// naming it); nullopt to go on.
std::optional<int> parse_command_flags(CLI::App& app, const std::vector<std::string>& args);

// An integer flag: decimal digits with an optional sign, or scientific notation whose value is an
// exact integer (1e3, 2.5e4); no hex, no spaces, nothing around it. InputError
// "FLAG must be an integer in RANGE (got 'TEXT')" unless it is one in [low, high].
int64_t parse_int_flag(const std::string& flag, const std::string& text, int64_t low, int64_t high,
                       const std::string& range);

// A real flag stored as float: decimal or scientific notation (no hex, inf or nan). `ok` judges
// the value after narrowing to float, so 1e-46 (0 as a float) fails "> 0" and 0.9999999999 (1 as
// a float) fails "< 1". InputError "FLAG must be a number RULE (got 'TEXT'...)" otherwise.
float parse_float_flag(const std::string& flag, const std::string& text, const std::string& rule,
                       const std::function<bool(float)>& ok);

// "0".."9" or "all" (all ten digits: nullopt); InputError naming `flag` otherwise.
std::optional<int> parse_digit_flag(const std::string& flag, const std::string& text);

// "all", "train" or "test"; InputError naming `flag` otherwise.
Split parse_split_flag(const std::string& flag, const std::string& text);

// The digit of a selection of MNIST images, as given or recorded (for messages) and as a value.
struct DigitChoice {
  std::string text;          // as given or recorded, for messages
  std::optional<int> digit;  // nullopt: all ten digits
};

// The images to use with the model in `dir` (eval's scored images, sample's start images): their
// digit and their MNIST directory, each from its flag when given (digit_flag not empty, data_flag
// set), else from what DIR/run.json records of the model's run (data.digit; data.dir while that
// directory exists), else the reference recipe's digit 3 and data/mnist (relative to the working
// directory); and what the model was trained on, when run.json records it (data.digit,
// data.split), so that eval can compare the images it scores with them and count the shared ones.
// run.json is read once. InputError naming --digit or run.json when the digit is not 0..9 or all
// (a recorded digit only when no --digit is given), and naming run.json's directory when neither
// it nor data/mnist is a directory (without --data).
struct ImageChoice {
  DigitChoice digit;
  std::string data_dir;
  std::optional<DigitChoice> trained_digit;
  std::optional<Split> trained_split;
  std::optional<std::string> trained_sha256;  // data.sha256: SHA-256 of those images' pixels
  // data.split as recorded (JSON text) when it is not all, train or test: no trained_split then.
  std::optional<std::string> bad_trained_split;
};
ImageChoice images_flagged_or_recorded(const std::string& digit_flag,
                                       const std::optional<std::string>& data_flag,
                                       const std::filesystem::path& dir);

// An output file that the command will write (atomically, through a temporary file beside it):
// InputError naming `flag` and the path unless it names no directory and no other non-regular
// file, and its directory exists and can be written, and unless it would replace a file of a run
// or model directory (one holding run.json or W.npy) that training owns (is_run_file_name, e.g.
// W.npy, run.json, metrics.csv). Checked before any work.
void check_output_file(const std::string& flag, const std::string& path);

// InputError unless the output's name ends in `extension` (".npy", ".png"; in any case): each file
// is what its name says.
void check_output_extension(const std::string& flag, const std::string& path,
                            const std::string& extension);

// InputError when two of the (flag, path) pairs name the same file (after normalizing the paths);
// empty paths (flags not given) are skipped.
void reject_same_files(const std::vector<std::pair<std::string, std::string>>& outputs);

}  // namespace rbm
