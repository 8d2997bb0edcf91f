# Steps scripts/demo and scripts/demo-rest share: reading the verification link a
# sign-up was mailed, and making the demo's staff member the way an operator does.
#   WEFT_DATA_DIR  the mesh's data dir    (default .weft, where `./weft up` keeps it)
#   WEFT_BIN       the weft launcher      (default the checkout's ./weft)
#   WEFT_USER_DATABASE_URL  the user service's PostgreSQL database, when it runs on one
DEMO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA_DIR="${WEFT_DATA_DIR:-.weft}"
WEFT_BIN="${WEFT_BIN:-$DEMO_ROOT/weft}"

# The token of the newest verification email to $1 in the mesh's mail folder, waiting
# up to a minute for it to be written.
verification_token() {
  local email="$1" token="" waited_from=$SECONDS
  while (( SECONDS - waited_from < 60 )); do
    token="$(python3 - "$DATA_DIR/mail" "$email" <<'PY'
import email, email.policy, pathlib, re, sys
mail = pathlib.Path(sys.argv[1])
# Oldest first: .eml files (the older format) by mtime, then the .mbox entries by day
# and position; an entry not yet ended by its blank line is still being written.
messages = [p.read_bytes() for p in sorted(mail.glob("*.eml"), key=lambda p: p.stat().st_mtime)]
for path in sorted(mail.glob("*.mbox")):
    raw = path.read_bytes()
    entries = re.split(rb"^From .*\n", raw, flags=re.M)[1:]
    if entries and not raw.endswith(b"\n\n"):
        entries.pop()
    messages += [re.sub(rb"^>(>*From )", rb"\1", e[:-1], flags=re.M) for e in entries]
found = ""
for raw in messages:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if sys.argv[2].lower() not in str(msg.get("To", "")).lower():
        continue
    body = msg.get_body(("plain",))
    link = body and re.search(r"/verify\?token=([A-Za-z0-9_-]+)", body.get_content())
    if link:
        found = link.group(1)
print(found)
PY
)"
    [[ -n "$token" ]] && { echo "$token"; return 0; }
    sleep 0.2
  done
  echo "no verification email to $email in $DATA_DIR/mail within a minute" >&2
  return 1
}

# Grants the staff role to $1 with the operator's tool (idempotent).
grant_staff() {
  "$WEFT_BIN" admin grant "$1" staff --data-dir "$DATA_DIR" >/dev/null
}
