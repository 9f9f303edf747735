// The xinetd.conf grammar as xinetd 2.3.15 reads it (parse.c, includedir.c):
//  - a line whose first non-blank character is '#' is a comment; a '#' anywhere else is text;
//  - `service NAME` (or `defaults`) is followed by a line holding only '{', attribute lines
//    `NAME OP VALUE...` (OP is a separate word: =, += or -=) and a line holding only '}';
//  - a bad attribute line, or a missing '{' / '}', makes xinetd drop the whole entry;
//  - `include FILE` and `includedir DIR` (files in strcmp order, skipping names that contain a
//    '.' or end in '~') may stand between entries.
// inetd.conf lines (>= 6 fields) are accepted wherever a top-level statement can stand.
// Bounds: kMaxFileBytes per file, kMaxIncludeDepth levels, and a file already being read is
// not read again (an include loop). Only regular files are read (never a FIFO, a device or a
// procfs/sysfs file), so no include can block the importer.
#include "xinetd/parse.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>

#include "util/unique_fd.hpp"

namespace superd::xinetd::detail {
namespace {

std::vector<std::string> split_blanks(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
    if (j > i) out.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return out;
}

// Lines of a file, with 1-based numbers; comments and blank lines skipped as xinetd's next_line.
class Lines {
 public:
  explicit Lines(std::string_view text) : text_(text) {}
  // The next significant line, or nullopt at the end.
  std::optional<std::string_view> next() {
    while (pos_ < text_.size()) {
      size_t end = text_.find('\n', pos_);
      if (end == std::string_view::npos) end = text_.size();
      std::string_view line = text_.substr(pos_, end - pos_);
      pos_ = end < text_.size() ? end + 1 : end;
      ++line_;
      size_t first = line.find_first_not_of(" \t\r");
      if (first == std::string_view::npos || line[first] == '#') continue;
      return line;
    }
    return std::nullopt;
  }
  uint32_t line() const { return line_; }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  uint32_t line_ = 0;
};

bool only_char(std::string_view line, char c) {
  auto words = split_blanks(line);
  return words.size() == 1 && words[0].size() == 1 && words[0][0] == c;
}

struct Ctx {
  Parsed& out;
  std::vector<std::string> open_files;  // canonical paths being read (loop detection)
  int depth = 0;
  size_t files_read = 1;
  Includes includes = Includes::read;
};

void warn(Ctx& c, const std::string& file, uint32_t line, std::string attribute, std::string message) {
  c.out.warnings.push_back({file, line, std::move(attribute), std::move(message)});
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

std::string dir_of(const std::string& file) {
  auto slash = file.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : file.substr(0, slash);
}

// Relative include paths are taken from the including file's directory (xinetd would use its
// working directory, which is "/" for the daemon).
std::string resolve(const std::string& from_file, const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  return dir_of(from_file) + "/" + path;
}

// Only regular files are read, so that no name in a config (or in an includedir such as /proc)
// can make the importer, or the daemon reloading a xinetd.conf, block: a FIFO blocks open()
// until a writer comes, /proc/kmsg blocks read() until the kernel logs. The stat before the open
// keeps devices and FIFOs from being opened at all; the open is O_NONBLOCK (a FIFO swapped in
// after the stat then opens at once instead of waiting) and its fstat decides. procfs and sysfs
// files look regular but are kernel interfaces, and some reads there have effects (reading
// /proc/kmsg takes the messages away from the system logger): they are refused unread.
// `pipe_ok`: the file named on the command line may be a pipe (`import-xinetd /dev/stdin`): the
// operator chose to wait for its writer. Names found in a configuration never may.
std::optional<std::string> read_bounded(const std::string& path, std::string& why, bool pipe_ok = false) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode)) {
    why = "is a directory";
    return std::nullopt;
  }
  const bool pipe = pipe_ok && S_ISFIFO(st.st_mode);
  if (!S_ISREG(st.st_mode) && !pipe) {
    why = "not a regular file";
    return std::nullopt;
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | (pipe ? 0 : O_NONBLOCK) | O_NOCTTY | O_CLOEXEC));
  if (!fd) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  struct statfs fs {};
  if (::fstat(fd.get(), &st) != 0 || ::fstatfs(fd.get(), &fs) != 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode) && !(pipe && S_ISFIFO(st.st_mode))) {
    why = "not a regular file";
    return std::nullopt;
  }
  if (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC) {
    why = "on procfs or sysfs, not a configuration file";
    return std::nullopt;
  }
  std::string text(kMaxFileBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);
      return std::nullopt;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  if (text.size() > kMaxFileBytes) {
    why = "larger than " + std::to_string(kMaxFileBytes) + " bytes";
    return std::nullopt;
  }
  return text;
}

void parse_in(std::string_view text, const std::string& file, Ctx& c);

void include_file(const std::string& path, const std::string& from, uint32_t line, Ctx& c) {
  if (c.depth >= kMaxIncludeDepth) {
    warn(c, from, line, "include",
         "\"" + path + "\" not read: includes nest deeper than " + std::to_string(kMaxIncludeDepth) + " levels");
    return;
  }
  std::string canon = canonical(path);
  if (std::find(c.open_files.begin(), c.open_files.end(), canon) != c.open_files.end()) {
    warn(c, from, line, "include", "\"" + path + "\" is already being read (an include loop); not read again");
    return;
  }
  if (c.files_read >= kMaxFiles) {
    warn(c, from, line, "include", "\"" + path + "\" not read: more than " + std::to_string(kMaxFiles) + " files");
    return;
  }
  std::string why;
  auto text = read_bounded(path, why);
  if (!text) {
    c.out.errors.push_back(path + ": " + why);
    return;
  }
  ++c.files_read;
  c.open_files.push_back(canon);
  ++c.depth;
  parse_in(*text, path, c);
  --c.depth;
  c.open_files.pop_back();
}

void include_dir(const std::string& dir, const std::string& from, uint32_t line, Ctx& c) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    c.out.errors.push_back(dir + ": " + std::strerror(errno));
    return;
  }
  // Not listed at all on procfs/sysfs (read_bounded would refuse each file anyway).
  if (struct statfs fs{};
      ::fstatfs(::dirfd(d), &fs) == 0 && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC)) {
    ::closedir(d);
    c.out.errors.push_back(dir + ": on procfs or sysfs, not a configuration directory");
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());  // strcmp order, as xinetd
  for (const auto& n : names) {
    if (n == "." || n == "..") continue;
    if (n.find('.') != std::string::npos || n.back() == '~') {
      warn(c, from, line, "includedir",
           "skipped " + dir + "/" + n +
               ": xinetd ignores file names that contain a '.' or end in '~' "
               "(rename it to convert it)");
      continue;
    }
    std::string path = dir + "/" + n;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      warn(c, from, line, "includedir", "skipped " + path + ": not a regular file");
      continue;
    }
    include_file(path, from, line, c);
  }
}

// Reads the attribute lines of a block up to its '}'. Returns false if xinetd drops the block;
// the lines are consumed either way.
bool parse_block(Lines& lines, Entry& e, Ctx& c) {
  bool ok = true;
  const std::string what = e.kind == Entry::Kind::defaults ? std::string("defaults") : e.name;
  for (;;) {
    auto l = lines.next();
    if (!l) {
      warn(c, e.file, e.line, what, "no closing '}' before the end of the file: xinetd drops this entry");
      return false;
    }
    if (only_char(*l, '}')) return ok;
    if (!ok) continue;  // xinetd skips to the '}' after a bad line
    auto words = split_blanks(*l);
    Attr a;
    a.line = lines.line();
    a.name = words[0];
    std::string op = words.size() > 1 ? words[1] : "";
    if (op == "=")
      a.op = Op::set;
    else if (op == "+=")
      a.op = Op::add;
    else if (op == "-=")
      a.op = Op::remove;
    else {
      std::string fix;
      auto eq = l->find('=');
      if (eq != std::string_view::npos) {
        size_t opstart = (eq > 0 && ((*l)[eq - 1] == '+' || (*l)[eq - 1] == '-')) ? eq - 1 : eq;
        std::string name(l->substr(0, opstart));
        std::string rest(l->substr(eq + 1));
        auto nw = split_blanks(name);
        auto rw = split_blanks(rest);
        std::string fixed =
            (nw.empty() ? std::string("attr") : nw[0]) + " " + std::string(l->substr(opstart, eq + 1 - opstart));
        for (const auto& w : rw) fixed += " " + w;
        fix = "; write \"" + fixed + "\" (blanks around the operator)";
        if (!nw.empty()) a.name = nw[0];
      } else {
        fix = "; an attribute line is NAME = VALUE...";
      }
      warn(c, e.file, a.line, a.name,
           (e.kind == Entry::Kind::defaults ? "bad line in defaults: xinetd ignores it and the rest of the defaults "
                                              "section (the lines before it stay in force)"
                                            : "no operator as a separate word: xinetd drops the whole service " +
                                                  e.name + ", so it is not converted") +
               fix);
      ok = false;
      continue;
    }
    a.values.assign(words.begin() + 2, words.end());
    for (size_t i = 0; i < a.values.size(); ++i)
      if (a.values[i][0] == '#') {
        a.comment_at = static_cast<int>(i);
        break;
      }
    e.attrs.push_back(std::move(a));
  }
}

void parse_in(std::string_view text, const std::string& file, Ctx& c) {
  Lines lines(text);
  while (auto l = lines.next()) {
    auto words = split_blanks(*l);
    const uint32_t at = lines.line();
    const std::string& kw = words[0];
    if ((kw == "include" || kw == "includedir") && words.size() >= 2 && words.size() < 6) {
      std::string path = resolve(file, words[1]);
      if (c.includes == Includes::skip)
        warn(c, file, at, kw, "\"" + path + "\" not read: includes are off");
      else if (kw == "include")
        include_file(path, file, at, c);
      else
        include_dir(path, file, at, c);
      continue;
    }
    if ((kw == "service" && words.size() >= 2 && words.size() < 6) || (kw == "defaults" && words.size() < 6)) {
      Entry e;
      e.kind = kw == "service" ? Entry::Kind::service : Entry::Kind::defaults;
      e.name = kw == "service" ? words[1] : "defaults";
      e.file = file;
      e.line = at;
      bool brace_inline = words.size() > (kw == "service" ? 2u : 1u) && words.back() == "{";
      if (brace_inline) {
        warn(c, file, at, e.name,
             "'{' on the `" + kw +
                 "` line: xinetd wants it on a line of its own and drops this entry, so it is "
                 "not converted; move the '{' to the next line");
        Entry skip = e;
        parse_block(lines, skip, c);
        continue;
      }
      auto open = lines.next();
      if (!open || !only_char(*open, '{')) {
        warn(c, file, at, e.name, "missing '{' on the line after `" + kw + "`: xinetd drops this entry");
        if (open && !only_char(*open, '}')) {
          Entry skip = e;
          parse_block(lines, skip, c);
        }
        continue;
      }
      // A bad line drops a service; a defaults section keeps the lines read before it.
      if (parse_block(lines, e, c) || e.kind == Entry::Kind::defaults) c.out.entries.push_back(std::move(e));
      continue;
    }
    if (words.size() >= 6) {
      Entry e;
      e.kind = Entry::Kind::inetd;
      e.name = words[0];
      e.file = file;
      e.line = at;
      e.fields = std::move(words);
      c.out.entries.push_back(std::move(e));
      continue;
    }
    warn(c, file, at, kw,
         "not a service, defaults, include, includedir or inetd.conf line: ignored (xinetd would "
         "also skip "
         "everything up to the next '}')");
  }
}

}  // namespace

void parse_text(std::string_view text, const std::string& file, Parsed& out, Includes includes) {
  Ctx c{out, {canonical(file)}, 0};
  c.includes = includes;
  parse_in(text, file, c);
}

void parse_file(const std::string& path, Parsed& out) {
  Ctx c{out, {}, 0};
  std::string why;
  auto text = read_bounded(path, why, true);
  if (!text) {
    out.errors.push_back(path + ": " + why);
    return;
  }
  c.open_files.push_back(canonical(path));
  parse_in(*text, path, c);
}

}  // namespace superd::xinetd::detail
