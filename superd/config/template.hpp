// Templates and instances, as systemd's: a service file `NAME@.toml` is a template, never served
// itself; `NAME@INSTANCE` is an instance of it, made by a file or link `NAME@INSTANCE.toml` or
// started at run time. An instance is parsed from its template's text (or its own file) with
// %i, %I, %p and %n expanded in every string value before any key is read, so listen addresses,
// paths and users are per instance and their problems carry the file, line, column and key.
// "%%" and "%c" are left for the stages that expand them in every service (the serial, %c, per
// connection in exec and environment), so a template means what a plain file means.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace superd::config {

inline constexpr size_t kMaxInstanceName = 200;

struct UnitName {
  std::string prefix;    // "foobard"
  std::string instance;  // "acme"; empty for the template itself ("foobard@")
  bool is_template() const { return instance.empty(); }
  std::string template_name() const { return prefix + "@"; }
};

// "foobard@acme" -> {foobard, acme}; "foobard@" -> {foobard, ""}; nullopt without an '@' (or
// with an empty prefix).
std::optional<UnitName> split_unit_name(std::string_view name);

// Why `instance` cannot name an instance ("" if it can): empty, over kMaxInstanceName
// characters, "/" or "..", or a character a unit name cannot hold ([A-Za-z0-9:_.\-] only; other
// bytes are written escaped, \xNN, as systemd-escape does).
std::string instance_name_error(std::string_view instance);

// systemd's unescaping, for %I: "\xNN" becomes that byte, "-" becomes "/".
std::string unescape_instance(std::string_view instance);

// `s` with %i %I %p %n of the instance `name` expanded; everything else as written.
std::string expand_instance(std::string_view s, const UnitName& name);

}  // namespace superd::config
