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
found = ""
files = sorted(pathlib.Path(sys.argv[1]).glob("*.eml"), key=lambda p: p.stat().st_mtime)
for path in files:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
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
