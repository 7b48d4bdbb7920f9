#!/bin/sh
# Mail yesterday's alert report (every watch: alerts per hour, the top matches with waveform, player and link).
# Used by soundsift-daily-report.cron. Settings: SOUNDSIFT_INDEX, REPORT_TO, REPORT_FROM, SOUNDSIFT_SERVER (the
# page the links open). Needs a sendmail (postfix, msmtp-mta, ssmtp). A day without alerts mails one line saying so.
set -eu
INDEX=${SOUNDSIFT_INDEX:-/var/lib/soundsift/index}
TO=${REPORT_TO:?set REPORT_TO to the QA team address}
FROM=${REPORT_FROM:-soundsift@$(hostname -f 2>/dev/null || hostname)}
SERVER=${SOUNDSIFT_SERVER:-http://127.0.0.1:8765}
DIR=${REPORT_DIR:-/var/lib/soundsift/reports}
mkdir -p "$DIR"
OUT="$DIR/report-$(date +%F).html"
BOUNDARY="soundsift-$(date +%s)-$$"
if soundsift report --since 24h --top 5 --embed-audio --server "$SERVER" --index "$INDEX" --out "$OUT" 2> "$DIR/last.err"; then
  {
    printf 'From: %s\nTo: %s\nSubject: soundsift daily report %s\nMIME-Version: 1.0\n' "$FROM" "$TO" "$(date +%F)"
    printf 'Content-Type: multipart/mixed; boundary="%s"\n\n--%s\n' "$BOUNDARY" "$BOUNDARY"
    printf 'Content-Type: text/plain; charset=utf-8\n\nThe report of the last 24 hours is attached (open it in a browser).\n\n--%s\n' "$BOUNDARY"
    printf 'Content-Type: text/html; charset=utf-8\nContent-Disposition: attachment; filename="%s"\nContent-Transfer-Encoding: base64\n\n' "$(basename "$OUT")"
    base64 "$OUT"
    printf '\n--%s--\n' "$BOUNDARY"
  } | sendmail -t
else
  printf 'From: %s\nTo: %s\nSubject: soundsift daily report %s\n\n%s\n' "$FROM" "$TO" "$(date +%F)" "$(cat "$DIR/last.err")" | sendmail -t
fi
