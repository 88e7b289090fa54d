#!/bin/bash
# The whole comparison (about 6 minutes): every benchmark for every database, then a
# kill -9 test. Results on stdout; RESULT lines are the numbers in docs/storage.md.
set -eu
cd "$(dirname "$0")"
cargo build --release -q
B=target/release/storage-choice
export BENCH_DIR="${BENCH_DIR:-$(mktemp -d)}"
$B fsync
for vs in 200 4200; do for b in 1 16 128 1024; do for e in redb fjall sqlite sqlite-normal; do
  $B write $e $vs $b
done; done; done
for e in redb fjall sqlite sqlite-normal; do $B mixed $e 200 128; done
# Insert + ack with a backlog of 100,000 stored messages: the push service's steady state.
for e in redb fjall sqlite sqlite-normal; do PREPOP=100000 $B mixed $e 200 128; done
for e in redb fjall sqlite sqlite-normal; do $B scan $e 200; done
for e in redb fjall sqlite; do /usr/bin/time -f "TIME rss $e maxrss_kb=%M elapsed=%e" $B rss $e; done
for e in redb fjall sqlite; do $B lock $e; done
for e in redb fjall sqlite; do $B crash $e 20; done
rm -rf "$BENCH_DIR"
