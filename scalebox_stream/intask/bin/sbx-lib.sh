# Shared code of the in-task tools (sourced by `scalebox`, `send-message`, `send-job-message`).
# POSIX sh and awk only: runs in busybox, dash and bash images, with no Python and no network.
#
# Added tasks are appended to $WORK_DIR/sink-tasks.jsonl, one JSON object per line; the agent sends them
# with the attempt's report, only if the attempt succeeds. Requests that need an answer go to the agent
# through the slot's channel directory ($SBX_CHANNEL): a request file, a reply FIFO, and a line on the
# agent's `requests` FIFO. Exit codes follow Scalebox: 0 ok, 1 error, 2 not found.

# The awk program that turns `task add` / `send-message` arguments into JSON lines. ARGV[1] is the mode
# ("task-add" or "send-message"), the rest are the tool's arguments, taken as they are (never as escapes).
SBX_ADD_AWK='
function fail(msg) { printf "%s: %s\n", TOOL, msg > "/dev/stderr"; failed = 1; exit 1 }
function jstr(s,    out, m) {
  out = ""
  while ((m = match(s, CTRL)) > 0) {
    out = out substr(s, 1, RSTART - 1) ESC[substr(s, RSTART, 1)]
    s = substr(s, RSTART + 1)
  }
  return "\"" out s "\""
}
function value_of(opt, i) {
  if (i + 1 >= ARGC) fail(opt " needs a value")
  return ARGV[i + 1]
}
function add_pair(kv,    eq) {
  eq = index(kv, "=")
  if (eq < 2) fail("a header is key=value, not \"" kv "\"")
  npairs++; KEY[npairs] = substr(kv, 1, eq - 1); VAL[npairs] = substr(kv, eq + 1)
}
BEGIN {
  for (c = 1; c < 32; c++) { ch = sprintf("%c", c); ESC[ch] = sprintf("\\u%04x", c); CTRL = CTRL ch }
  ESC[sprintf("%c", 8)] = "\\b"; ESC["\t"] = "\\t"; ESC["\n"] = "\\n"; ESC[sprintf("%c", 12)] = "\\f"
  ESC["\r"] = "\\r"; ESC["\""] = "\\\""; ESC["\\"] = "\\\\"
  CTRL = "[\"\\\\" CTRL "]"
  mode = ARGV[1]; TOOL = (mode == "task-add") ? "scalebox task add" : mode
  module = ""; has_module = 0; raw = ""; npairs = 0; nbodies = 0; options = (mode == "task-add")
  if (mode != "task-add") {
    n = ARGC - 2
    if (mode == "send-job-message" && n != 2) fail("usage: send-job-message MODULE BODY")
    if (n < 1 || n > 2) fail("usage: send-message [MODULE] BODY")
    if (n == 2) { has_module = 1; module = ARGV[2]; BODY[++nbodies] = ARGV[3] } else BODY[++nbodies] = ARGV[2]
  }
  for (i = 2; options && i < ARGC; i++) {
    a = ARGV[i]
    if (a == "--") { for (i++; i < ARGC; i++) BODY[++nbodies] = ARGV[i]; break }
    if (a == "-h" || a == "-H" || a == "--header") { add_pair(value_of(a, i)); i++ }
    else if (a ~ /^--header=/) add_pair(substr(a, 10))
    else if (a == "--sink-module" || a == "--sink-job") { module = value_of(a, i); has_module = 1; i++ }
    else if (a ~ /^--sink-(module|job)=/) { module = substr(a, index(a, "=") + 1); has_module = 1 }
    else if (a == "--headers") { raw = value_of(a, i); i++ }
    else if (a ~ /^--headers=/) raw = substr(a, 11)
    else if (a == "--to-host" || a == "--to-ip") { add_pair((a == "--to-host" ? "to_host" : "to_ip") "=" value_of(a, i)); i++ }
    else if (a ~ /^--to-(host|ip)=/) add_pair((a ~ /^--to-host/ ? "to_host" : "to_ip") substr(a, index(a, "=")))
    else if (a == "--app-id" || a == "--module-id" || a == "--job-id" || a == "--batch-size" \
             || a == "--conflict-action" || a == "--from-module") i++
    else if (a ~ /^--(app-id|module-id|job-id|batch-size|conflict-action|from-module)=/ \
             || a == "--ignore-dupkey" || a == "--disable-local-ip") { }
    else if (a ~ /^--(task-file|remote-server)/) fail(a " is not supported with other options inside a task")
    else if (a ~ /^-/ && a != "-") fail("unknown option " a)
    else BODY[++nbodies] = a
  }
  if (has_module && module == "") fail("the module name is empty")
  head = "{"
  if (has_module) head = head "\"module\":" jstr(module) ","
  pairs = ""
  for (p = 1; p <= npairs; p++) pairs = pairs (p > 1 ? "," : "") jstr(KEY[p]) ":" jstr(VAL[p])
  if (raw != "") { gsub(/[\r\n]/, " ", raw); tail = ",\"headers\":[" raw ",{" pairs "}]}" }
  else if (npairs) tail = ",\"headers\":{" pairs "}}"
  else tail = "}"
  for (b = 1; b <= nbodies; b++) {
    if (BODY[b] == "") fail("a task body must not be empty")
    LINE[b] = head "\"body\":" jstr(BODY[b]) tail
  }
  for (b = 1; b <= nbodies; b++) print LINE[b]
  exit 0
}'

sbx_die() { # CODE MESSAGE
  printf '%s\n' "$2" >&2
  exit "$1"
}

# Append the tasks named by the arguments to $WORK_DIR/sink-tasks.jsonl (MODE: task-add, send-message or
# send-job-message). They leave with the attempt's report, only if it succeeds.
sbx_add() {
  [ -n "${WORK_DIR:-}" ] && [ -d "$WORK_DIR" ] || sbx_die 1 "$1: WORK_DIR is not set: not inside a task"
  if [ "$1" = task-add ] && [ "$#" -eq 3 ] && [ "$2" = --task-file ]; then
    [ "$3" -ef "$WORK_DIR/sink-tasks.txt" ] && return 0 # the agent reads that file anyway
    [ -f "$3" ] || sbx_die 1 "scalebox task add: no task file $3"
    cat "$3" >> "$WORK_DIR/sink-tasks.txt" || sbx_die 1 "scalebox task add: cannot append to sink-tasks.txt"
    return 0
  fi
  _sbx_lines=$(LC_ALL=C awk "$SBX_ADD_AWK" "$@") || exit 1
  [ -z "$_sbx_lines" ] && return 0 # no body: Scalebox sends sink-tasks.txt, which the agent reads anyway
  printf '%s\n' "$_sbx_lines" >> "$WORK_DIR/sink-tasks.jsonl" || sbx_die 1 "$1: cannot write sink-tasks.jsonl"
}

# Run a command with a time limit when the image has `timeout` (busybox and coreutils both do).
sbx_limit() { # SECONDS COMMAND...
  if command -v timeout >/dev/null 2>&1; then timeout "$@"; else shift; "$@"; fi
}

# Send a state request; a `--sema-file FILE` is read here (the agent cannot open the task's files: a container's)
# and forwarded as `--sema-file-name=FILE --sema-file-text=CONTENTS`, two arguments like any other.
sbx_state_request() {
  _sbx_n=$# _sbx_opts=1
  while [ "$_sbx_n" -gt 0 ]; do # each argument is taken off the front and put back at the end
    _sbx_a=$1; shift; _sbx_n=$((_sbx_n - 1))
    case $_sbx_opts$_sbx_a in
      1--) _sbx_opts=0; set -- "$@" "$_sbx_a" ;;
      1--sema-file|1--sema-file=*)
        if [ "$_sbx_a" = --sema-file ]; then
          [ "$_sbx_n" -gt 0 ] || sbx_die 1 "scalebox semaphore create: --sema-file needs a file name"
          _sbx_f=$1; shift; _sbx_n=$((_sbx_n - 1))
        else
          _sbx_f=${_sbx_a#--sema-file=}
        fi
        [ -f "$_sbx_f" ] && [ -r "$_sbx_f" ] || sbx_die 1 "scalebox semaphore create: cannot read the sema file $_sbx_f"
        _sbx_t=$(cat "$_sbx_f") || sbx_die 1 "scalebox semaphore create: cannot read the sema file $_sbx_f"
        set -- "$@" "--sema-file-name=$_sbx_f" "--sema-file-text=$_sbx_t" ;;
      *) set -- "$@" "$_sbx_a" ;;
    esac
  done
  sbx_request "$@"
}

# Send a request (the arguments) to the agent and print its answer; exit with its code.
sbx_request() {
  _sbx_ch=${SBX_CHANNEL:-}
  [ -n "$_sbx_ch" ] && [ -p "$_sbx_ch/requests" ] \
    || sbx_die 1 "scalebox ${1:-} ${2:-}: no agent to ask (SBX_CHANNEL is not a channel): not inside a task"
  _sbx_id=$$
  _sbx_req="$_sbx_ch/$_sbx_id.req"
  _sbx_rep="$_sbx_ch/$_sbx_id.rep"
  [ -e "$_sbx_rep" ] && rm -f "$_sbx_rep" # a FIFO left by a killed tool of the same pid
  trap 'rm -f "$_sbx_req" "$_sbx_rep"' EXIT # the agent removes both when it answers
  trap 'exit 1' HUP INT TERM
  printf '%s\0' sbx1 "${TASK_ID:-}" "${ATTEMPT:-}" "SEMAPHORE_AUTO_CREATE=${SEMAPHORE_AUTO_CREATE:-}" \
    "APP_ID=${APP_ID:-}" "SEMAPHORE_ALLOW_NEGATIVE=${SEMAPHORE_ALLOW_NEGATIVE:-}" \
    "CONFLICT_ACTION=${CONFLICT_ACTION:-}" -- "$@" > "$_sbx_req" || sbx_die 1 "scalebox: cannot write the request"
  mkfifo "$_sbx_rep" || sbx_die 1 "scalebox: cannot make the reply FIFO"
  # read-write: the open never blocks (Linux), even if the agent is gone (then no answer comes, see below)
  exec 4<>"$_sbx_ch/requests" || sbx_die 1 "scalebox ${1:-} ${2:-}: the agent does not take requests"
  printf '%s\n' "$_sbx_id" >&4 # one short write: never mixed with another tool's line
  exec 4>&-
  _sbx_out=$(sbx_limit "${SBX_TOOL_TIMEOUT:-120}" cat "$_sbx_rep"; echo .) # the dot keeps trailing newlines
  _sbx_out=${_sbx_out%.}
  case $_sbx_out in
    [0-9]*"
"*) ;;
    *) sbx_die 1 "scalebox ${1:-} ${2:-}: no answer from the agent" ;;
  esac
  trap - EXIT
  _sbx_code=${_sbx_out%%"
"*}
  _sbx_text=${_sbx_out#*"
"}
  if [ "$_sbx_code" = 0 ]; then printf '%s' "$_sbx_text"; else printf '%s' "$_sbx_text" >&2; fi
  exit "$_sbx_code"
}
