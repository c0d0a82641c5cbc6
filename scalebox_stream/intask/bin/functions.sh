# Scalebox's shell helpers for module scripts: `source /usr/local/bin/functions.sh`.
# POSIX sh and awk only (no jq needed): works in busybox, dash and bash.
#
#   get_json_value JSON NAME   the value of top-level key NAME of the JSON object: a string unquoted and
#                              unescaped, a number or true/false as written, an object or array as its JSON
#                              text; nothing for null, a missing key or text that is not a JSON object
#   get_header JSON NAME       get_json_value, or, when the header is missing or empty, the environment
#                              variable named NAME in upper case (get_header "$2" sema_name -> $SEMA_NAME)
#   get_parameter JSON NAME    the same as get_header (older name)
#   parse_json JSON NAME       every top-level key into NAME: in bash an associative array (NAME[key]=value,
#                              declared global if needed); in a plain POSIX sh, variables NAME_key for the
#                              keys that are valid names
#   get_host_path PATH         where the container sees the host path PATH (under /local_data_root when
#                              the host's root is mounted there)

_SBX_JSON_AWK='
function hexval(h,    i, v, c) {
  v = 0
  for (i = 1; i <= 4; i++) {
    c = index("0123456789abcdef", tolower(substr(h, i, 1)))
    if (c == 0) bad()
    v = v * 16 + c - 1
  }
  return v
}
function utf8(cp) {
  if (cp < 128) return sprintf("%c", cp)
  if (cp < 2048) return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
  if (cp < 65536) return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
  return sprintf("%c%c%c%c", 240 + int(cp / 262144), 128 + int(cp / 4096) % 64, 128 + int(cp / 64) % 64, 128 + cp % 64)
}
function bad() { exit 1 }
function ws() { while (pos <= n && index(" \t\r\n", substr(S, pos, 1)) > 0) pos++ }
function jstring(    out, c, cp, lo, rest) {
  pos++; out = ""
  while (pos <= n) {
    rest = substr(S, pos)
    if (!match(rest, /["\\]/)) bad()
    out = out substr(rest, 1, RSTART - 1); pos += RSTART - 1
    if (substr(S, pos, 1) == "\"") { pos++; return out }
    c = substr(S, pos + 1, 1)
    if (c == "u") {
      cp = hexval(substr(S, pos + 2, 4)); pos += 6
      if (cp >= 55296 && cp < 56320 && substr(S, pos, 2) == "\\u") {
        lo = hexval(substr(S, pos + 2, 4))
        if (lo >= 56320 && lo < 57344) { cp = 65536 + (cp - 55296) * 1024 + (lo - 56320); pos += 6 }
      }
      out = out utf8(cp); continue
    }
    if (c == "n") out = out "\n"; else if (c == "t") out = out "\t"; else if (c == "r") out = out "\r"
    else if (c == "b") out = out sprintf("%c", 8); else if (c == "f") out = out sprintf("%c", 12)
    else if (c == "\"" || c == "\\" || c == "/") out = out c
    else bad()
    pos += 2
  }
  bad()
}
function jvalue(    c, start, depth) {
  c = substr(S, pos, 1)
  if (c == "\"") { TYPE = "s"; return jstring() }
  start = pos
  if (c == "{" || c == "[") {
    depth = 0
    while (pos <= n) {
      c = substr(S, pos, 1)
      if (c == "\"") { jstring(); continue }
      if (c == "{" || c == "[") depth++
      else if (c == "}" || c == "]") { depth--; if (depth == 0) { pos++; TYPE = "j"; return substr(S, start, pos - start) } }
      pos++
    }
    bad()
  }
  while (pos <= n && index(",}] \t\r\n", substr(S, pos, 1)) == 0) pos++
  if (pos == start) bad()
  TYPE = (substr(S, start, pos - start) == "null") ? "n" : "l"
  return substr(S, start, pos - start)
}
function squote(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
BEGIN {
  S = ARGV[1]; want = ARGV[2]; mode = ARGV[3]; n = length(S); pos = 1; found = 0
  ws(); if (substr(S, pos, 1) != "{") bad()
  pos++; ws()
  if (substr(S, pos, 1) == "}") pos = n + 1
  while (pos <= n) {
    ws(); if (substr(S, pos, 1) != "\"") bad()
    key = jstring(); ws()
    if (substr(S, pos, 1) != ":") bad()
    pos++; ws()
    v = jvalue(); if (TYPE == "n") v = ""
    if (mode == "get") { if (key == want) { found = 1; value = v } }
    else if (mode == "bash") OUT = OUT want "[" squote(key) "]=" squote(v) "\n"
    else if (key ~ /^[A-Za-z0-9_]+$/) OUT = OUT want "_" key "=" squote(v) "\n"
    ws(); c = substr(S, pos, 1); pos++
    if (c == "}") break
    if (c != ",") bad()
  }
  if (mode == "get") { if (found) print value; exit found ? 0 : 2 }
  printf "%s", OUT
}'

get_json_value() { # JSON NAME
  LC_ALL=C awk "$_SBX_JSON_AWK" "$1" "$2" get
}

get_header() { # JSON NAME
  _sbx_v=$(get_json_value "$1" "$2")
  if [ -z "$_sbx_v" ]; then
    case $2 in
      ''|[0-9]*|*[!A-Za-z0-9_]*) ;;
      *) eval "_sbx_v=\${$(printf '%s' "$2" | tr '[:lower:]' '[:upper:]'):-}" ;;
    esac
  fi
  printf '%s\n' "$_sbx_v"
}

get_parameter() { # JSON NAME
  get_header "$@"
}

parse_json() { # JSON NAME
  case $2 in ''|[0-9]*|*[!A-Za-z0-9_]*) echo "parse_json: '$2' is not a variable name" >&2; return 1 ;; esac
  if [ -n "${BASH_VERSION:-}" ]; then
    eval "declare -gA $2 2>/dev/null"
    eval "$(LC_ALL=C awk "$_SBX_JSON_AWK" "$1" "$2" bash)"
  else
    eval "$(LC_ALL=C awk "$_SBX_JSON_AWK" "$1" "$2" sh)"
  fi
}

get_host_path() { # PATH
  case $1 in
    /local_data_root/*|/local_data_root) printf '%s\n' "$1" ;;
    /*) if [ -d /local_data_root ]; then printf '/local_data_root%s\n' "$1"; else printf '%s\n' "$1"; fi ;;
    *) printf '%s\n' "$1" ;;
  esac
}
