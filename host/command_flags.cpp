// Flag parsing shared by the commands (see command_flags.hpp).
#include "host/command_flags.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "host/atomic_file.hpp"
#include "host/checkpoint.hpp"
#include "host/errors.hpp"
#include "host/metrics.hpp"
#include "host/sha256.hpp"

namespace rbm {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// A decimal number as typed: [+-] digits [. digits] [(e|E) [+-] digits], at least one mantissa
// digit, nothing else. Its value is sign * mantissa * 10^exponent, the mantissa's digits without
// the decimal point.
struct DecimalText {
  bool negative = false;
  std::string mantissa;
  int64_t exponent = 0;
};

std::optional<DecimalText> scan_decimal(const std::string& text) {
  DecimalText out;
  size_t i = 0;
  const size_t n = text.size();
  if (i < n && (text[i] == '+' || text[i] == '-')) out.negative = text[i++] == '-';
  for (; i < n && is_digit(text[i]); ++i) out.mantissa += text[i];
  if (i < n && text[i] == '.') {
    for (++i; i < n && is_digit(text[i]); ++i) {
      out.mantissa += text[i];
      --out.exponent;
    }
  }
  if (out.mantissa.empty()) return std::nullopt;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < n && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
    if (i == n || !is_digit(text[i])) return std::nullopt;
    int64_t e = 0;
    for (; i < n && is_digit(text[i]); ++i) {
      e = std::min<int64_t>(e * 10 + (text[i] - '0'), 1'000'000'000);  // far beyond any value
    }
    out.exponent += negative ? -e : e;
  }
  if (i != n) return std::nullopt;
  return out;
}

// The exact integer value of `text`, when it is one of magnitude below 1e18.
std::optional<int64_t> exact_integer(const std::string& text) {
  std::optional<DecimalText> number = scan_decimal(text);
  if (!number) return std::nullopt;
  std::string digits = number->mantissa;
  int64_t exponent = number->exponent;
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  if (digits.empty()) return 0;
  while (exponent < 0 && digits.back() == '0') {
    digits.pop_back();
    ++exponent;
  }
  if (exponent < 0) return std::nullopt;  // a fraction
  if (static_cast<int64_t>(digits.size()) + exponent > 18) return std::nullopt;
  int64_t value = 0;
  for (const char c : digits) value = value * 10 + (c - '0');
  for (int64_t e = 0; e < exponent; ++e) value *= 10;
  return number->negative ? -value : value;
}

// --help lists an option that has a positional name too (eval's and sample's model) under
// "Positionals" and again under "Options", each line with its description and REQUIRED, as if
// they were two things to give. Its flag line here says which positional it names instead.
class PositionalByNameFormatter final : public CLI::Formatter {
 public:
  std::string make_option(const CLI::Option* option, bool is_positional) const override {
    if (is_positional || !option->get_positional()) {
      return CLI::Formatter::make_option(option, is_positional);
    }
    std::stringstream line;
    CLI::detail::format_help(
        line, make_option_name(option, false) + " " + get_label(option->get_type_name()),
        "the positional " + option->get_name(true) + ", given by name", get_column_width());
    return line.str();
  }
};

}  // namespace

void prepare_flags(CLI::App& app) {
  app.formatter(std::make_shared<PositionalByNameFormatter>());
  // CLI11 reads an empty value as 0 (a valid --seed) or as an empty path: refuse it instead.
  const CLI::Validator not_empty(
      [](std::string& value) { return value.empty() ? std::string("empty value") : std::string(); },
      "", "not empty");
  for (CLI::Option* option : app.get_options()) {
    if (option->get_expected_min() > 0 && option->get_type_size_min() > 0) {
      option->check(not_empty);
    }
    // Keep every occurrence; reject_repeated_flags says what is wrong in plain words.
    option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
}

void reject_repeated_flags(const CLI::App& app) {
  for (const CLI::Option* option : app.get_options()) {
    if (option->count() > 1) throw InputError(option->get_name() + " given twice");
  }
}

std::string parse_error_text(const CLI::ParseError& error) {
  const std::string what = error.what();
  // The model directory is most often given as a positional (eval DIR): CLI11 names the flag.
  if (what == "--model is required") {
    return "a model directory is required, as DIR or --model DIR";
  }
  // ": 1 required N missing", N the value's name in --help (TEXT where none is set).
  const std::string required = ": 1 required ", missing = " missing";
  if (const size_t at = what.rfind(required);
      at != std::string::npos && what.ends_with(missing) &&
      what.find(' ', at + required.size()) == what.size() - missing.size()) {
    return what.substr(0, at) + ": no value given";
  }
  // "The following argument(s) was/were not expected: c b a", the words reversed.
  const std::string unexpected = " not expected: ";
  if (const size_t at = what.find(unexpected); at != std::string::npos) {
    std::vector<std::string> words;
    std::istringstream in(what.substr(at + unexpected.size()));
    for (std::string word; in >> word;) words.insert(words.begin(), word);
    std::string text = what.substr(0, at + unexpected.size());
    for (size_t k = 0; k < words.size(); ++k) text += (k > 0 ? " " : "") + words[k];
    return text;
  }
  return what;
}

std::optional<std::string> empty_inline_value(const CLI::App& app,
                                              const std::vector<std::string>& args) {
  for (size_t k = 0; k < args.size(); ++k) {
    const std::string& arg = args[k];
    if (arg == "--") break;  // positionals follow
    if (!arg.starts_with("--")) continue;
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    const CLI::Option* option = app.get_option_no_throw(name);
    if (option == nullptr) continue;  // not one of app's flags: CLI11 says so
    if (equals == std::string::npos) {
      // A flag that takes a value takes the next word, whatever it looks like (--out --x=).
      if (option->get_type_size_min() > 0 && option->get_expected_min() > 0) ++k;
      continue;
    }
    if (equals + 1 == arg.size()) return name + ": empty value";
  }
  return std::nullopt;
}

std::optional<int> parse_command_flags(CLI::App& app, const std::vector<std::string>& args) {
  prepare_flags(app);
  if (const std::optional<std::string> empty = empty_inline_value(app, args)) {
    std::fprintf(stderr, "%s: %s (see --help)\n", app.get_name().c_str(), empty->c_str());
    return 2;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::fprintf(stderr, "%s: %s (see --help)\n", app.get_name().c_str(),
                 parse_error_text(e).c_str());
    return 2;
  }
  reject_repeated_flags(app);
  return std::nullopt;
}

int64_t parse_int_flag(const std::string& flag, const std::string& text, int64_t low, int64_t high,
                       const std::string& range) {
  const std::optional<int64_t> value = exact_integer(text);
  if (!value || *value < low || *value > high) {
    throw InputError(flag + " must be an integer in " + range + " (got '" + text + "')");
  }
  return *value;
}

float parse_float_flag(const std::string& flag, const std::string& text, const std::string& rule,
                       const std::function<bool(float)>& ok) {
  const std::string message = flag + " must be a number " + rule + " (got '" + text + "'";
  const std::optional<DecimalText> decimal = scan_decimal(text);
  if (!decimal) throw InputError(message + ")");
  const double value = std::strtod(text.c_str(), nullptr);  // the syntax is strtod's subset
  if (!(std::fabs(value) <= FLT_MAX)) throw InputError(message + ", beyond a 32-bit float)");
  const float narrowed = static_cast<float>(value);
  // A value typed as nonzero (a nonzero digit) that is 0 as a float, or already as a double
  // (1e-400), would turn a feature off without a word: --weight-decay 1e-50 would not select the
  // minibatch path that any decay selects.
  const bool typed_nonzero = decimal->mantissa.find_first_not_of('0') != std::string::npos;
  if (typed_nonzero && narrowed == 0.0f) {
    // 0 itself may be in the range: say why this one is not it.
    throw InputError(message +
                     ", which is 0 as a 32-bit float: a nonzero value must be at least 1.4e-45 in "
                     "magnitude)");
  }
  if (!ok(narrowed)) {
    // The double may pass where its float does not (1e-46 is 0, 0.9999999999 is 1): say so.
    const bool changed = static_cast<double>(narrowed) != value;
    throw InputError(message +
                     (changed ? ", which is " + format_number(narrowed, -1) + " as a 32-bit float)"
                              : std::string(")")));
  }
  return narrowed == 0.0f ? 0.0f : narrowed;  // -0 is 0: run.json records 0, not -0.0
}

std::optional<int> parse_digit_flag(const std::string& flag, const std::string& text) {
  if (text == "all") return std::nullopt;
  if (text.size() == 1 && is_digit(text[0])) return text[0] - '0';
  throw InputError(flag + " must be 0..9 or all (got '" + text + "')");
}

Split parse_split_flag(const std::string& flag, const std::string& text) {
  if (text != "all" && text != "train" && text != "test") {
    throw InputError(flag + " must be all, train or test (got '" + text + "')");
  }
  return parse_split(text);
}

ImageChoice images_flagged_or_recorded(const std::string& digit_flag,
                                       const std::optional<std::string>& data_flag,
                                       const std::filesystem::path& dir) {
  ImageChoice choice;  // the reference recipe's digit 3 and data/mnist, unless given or recorded
  choice.digit = {"3", 3};
  choice.data_dir = data_flag.value_or("data/mnist");
  if (!digit_flag.empty()) choice.digit = {digit_flag, parse_digit_flag("--digit", digit_flag)};
  nlohmann::json run;
  try {
    run = nlohmann::json::parse(read_file(dir / "run.json"));
  } catch (const std::exception&) {
    return choice;  // no run.json (a model written by hand); a broken one is read_model's to refuse
  }
  const nlohmann::json* data =
      run.is_object() && run.contains("data") && run["data"].is_object() ? &run["data"] : nullptr;
  if (data == nullptr) return choice;
  if (!data_flag && data->contains("dir") && (*data)["dir"].is_string()) {
    const std::string recorded = (*data)["dir"].get<std::string>();
    std::error_code error;
    if (!recorded.empty() && std::filesystem::is_directory(recorded, error)) {
      choice.data_dir = recorded;
    } else if (!std::filesystem::is_directory(choice.data_dir, error)) {
      // Neither: say both, rather than only that the default is missing.
      throw InputError((dir / "run.json").string() + " records the run's images in " + recorded +
                       ", which is not a directory now, and the default " + choice.data_dir +
                       " is not one either: give --data");
    }
  }
  // A run.json without data.digit (written by hand) means the default; one that records a digit
  // records it as the trainer writes it, 0..9 or "all", as --resume requires.
  if (data->contains("digit")) {
    const nlohmann::json& digit = (*data)["digit"];
    if (digit == "all") {
      choice.trained_digit = DigitChoice{"all", std::nullopt};
    } else if (digit.is_number_integer() && digit.get<int64_t>() >= 0 &&
               digit.get<int64_t>() <= 9) {
      choice.trained_digit = DigitChoice{digit.dump(), digit.get<int>()};
    } else if (digit_flag.empty()) {
      throw InputError((dir / "run.json").string() + ": data.digit " + digit.dump() +
                       " is not 0..9 or \"all\"");
    }
    if (digit_flag.empty()) choice.digit = *choice.trained_digit;
  }
  if (data->contains("split")) {
    const nlohmann::json& split = (*data)["split"];
    if (split == "all" || split == "train" || split == "test") {
      choice.trained_split = parse_split(split.get<std::string>());
    } else {
      // Not a split the trainer writes: what the model was trained on stays unknown (eval says
      // why).
      choice.bad_trained_split = split.dump();
    }
  }
  if (data->contains("sha256") && (*data)["sha256"].is_string()) {
    choice.trained_sha256 = lowercase_hex((*data)["sha256"].get<std::string>());
  }
  return choice;
}

void check_output_file(const std::string& flag, const std::string& text) {
  namespace fs = std::filesystem;
  const std::string where = flag + " " + text + ": ";
  if (text.empty()) throw InputError(flag + ": empty value");
  // Many tools read "-" as standard output; rbm writes only files (written whole, then renamed
  // into place), so a file named "-" would surprise: ./- names it, if that is what is meant.
  if (text == "-") {
    throw InputError(where + "rbm writes files, not standard output (./- names a file called -)");
  }
  if (!fs::path(text).has_filename()) throw InputError(where + "names a directory, not a file");
  // What the kernel reaches through links first: /proc/self/fd/1 is a magic link, whose text
  // (pipe:[N]) names no file, to a pipe.
  std::error_code error;
  const fs::file_status reached = fs::status(text, error);
  if (fs::exists(reached) && !fs::is_regular_file(reached) && !fs::is_directory(reached)) {
    throw InputError(where + "exists and is not a regular file");
  }
  // A symbolic link is written through (host/atomic_file.hpp): the file it names is judged.
  fs::path path;
  try {
    path = write_target(text);
  } catch (const InputError& e) {
    throw InputError(flag + " " + e.what());
  }
  const std::string to_file = path == fs::path(text) ? "" : "(a link to " + path.string() + ") ";
  const fs::file_status status = fs::status(path, error);
  if (error && status.type() != fs::file_type::not_found) {
    throw InputError(where + to_file + "cannot be examined: " + error.message());
  }
  if (fs::is_directory(status)) throw InputError(where + to_file + "is a directory");
  if (fs::exists(status) && !fs::is_regular_file(status)) {
    throw InputError(where + to_file + "exists and is not a regular file");
  }
  const fs::path parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const fs::file_status parent_status = fs::status(parent, error);
  if (!fs::exists(parent_status)) {
    throw InputError(where + to_file + "its directory " + parent.string() + " does not exist");
  }
  if (!fs::is_directory(parent_status)) {
    throw InputError(where + to_file + parent.string() + " is not a directory");
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    throw InputError(where + to_file + "cannot write in " + parent.string() + ": " +
                     std::strerror(errno));
  }
  // A run's or model's directory keeps its own files: a typo must not replace a checkpoint.
  if (is_run_file_name(path.filename().string())) {
    for (const char* marker : {"run.json", "W.npy"}) {
      if (fs::exists(parent / marker, error)) {
        throw InputError(where + to_file + "is a file of the run directory " + parent.string() +
                         " (its checkpoint, records or mosaic), not to be overwritten; name "
                         "another file");
      }
    }
  }
}

void check_output_extension(const std::string& flag, const std::string& path,
                            const std::string& extension) {
  // A PNG named x.npy, or states named after an MNIST file that --init data reads, had been written
  // without a word over whatever had the name. A link is written through: its target's name counts
  // too (states.npy linked to an MNIST file).
  const auto ends_in_extension = [&](const std::filesystem::path& name) {
    std::string text = name.filename().string();
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text.ends_with(extension);
  };
  if (!ends_in_extension(path)) {
    throw InputError(flag + " " + path + ": " + flag + " is written as " + extension +
                     "; give a name ending in " + extension);
  }
  if (const std::filesystem::path target = write_target(path); !ends_in_extension(target)) {
    throw InputError(flag + " " + path + ": a link to " + target.string() + ", which " + flag +
                     " would replace with its " + extension + " file; name another file");
  }
}

void reject_same_files(const std::vector<std::pair<std::string, std::string>>& outputs) {
  namespace fs = std::filesystem;
  std::vector<fs::path> normal;
  for (const auto& [flag, text] : outputs) {
    std::error_code error;
    // A link is written through (check_output_file): two names of one file are one output.
    // absolute first: weakly_canonical leaves a relative path relative when no prefix exists. Not
    // lexically normal before it: "dir/../x" is x beside dir's target when dir is a link.
    fs::path path = text.empty() ? fs::path() : fs::absolute(write_target(text), error);
    if (!text.empty()) {
      const fs::path canonical = fs::weakly_canonical(path, error);
      path = error ? path.lexically_normal() : canonical;
    }
    normal.push_back(path);
  }
  // Also one file under two names that links do not explain: hard links.
  const auto same_file = [&](size_t i, size_t j) {
    std::error_code error;
    return normal[i] == normal[j] || fs::equivalent(normal[i], normal[j], error);
  };
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      if (!normal[i].empty() && !normal[j].empty() && same_file(i, j)) {
        throw InputError(outputs[j].first + " " + outputs[j].second + " is the same file as " +
                         outputs[i].first + " " + outputs[i].second);
      }
    }
  }
}

}  // namespace rbm
