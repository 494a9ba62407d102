"""Summarises a perf recording of flarum-ws (bench/profile.sh) by part of the
fan-out path, in percent of server CPU and in µs per delivery."""

import json
import re
import subprocess
import sys

data, run = sys.argv[1], sys.argv[2]
report = json.loads(open(run).read().strip().splitlines()[-1])
us_per_delivery = report["server_cpu_us_per_delivery"]


def perf_report(*args):
    out = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--sort", "sym", "-g", "none", *args],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(?:([\d.]+)%\s+)?\[([k.])\]\s+(.*)", line)
        if m:
            rows.append((float(m.group(1)), m.group(2) and float(m.group(2)), m.group(3), m.group(4)))
    return rows


# Inclusive time of the send system calls (sendto from the sessions,
# sendmsg from the writers, writev and write where they appear): the
# loopback receive path runs in the sender's softirq, so the receiving
# client's side is charged here too.
inclusive = {sym: total for total, _, _, sym in perf_report("--children")}
send = sum(inclusive.get(sym, 0.0) for sym in ("__sys_sendto", "__sys_sendmsg", "do_writev", "ksys_write"))
softirq = inclusive.get("handle_softirqs", 0.0)

USER_PARTS = [
    ("fan-out: queue the shared frame for each recipient, hand the socket to its writer or wake its task",
     r"SocketLink::send|WriterHandle::push|mpsc::list::Tx|batch_semaphore|Hub::fan_out|AtomicWaker::wake|transition_to_notified|queue::Local"),
    ("writer: flush each socket's queue with one vectored send",
     r"Mailbox::flush|try_write_texts|writer::run|send_vectored|as_fd|__libc_sendmsg|shared_drop|vec_deque::drain|bytes::"),
    ("session task: take frames, frame them, write",
     r"list::Rx|chan::Rx|tungstenite|poll_write|memmove|memcpy|__send"),
    ("wakers and readiness polled per wake (socket, close request, shutdown, timer, read attempt)",
     r"poll_readiness|AtomicWaker::register|register_by_ref|poll_notified|Notified|Sleep|memset|cancel"),
    ("runtime scheduling", r"scheduler|run_task|Context::run|task::"),
]
parts = {name: 0.0 for name, _ in USER_PARTS}
other_user = kernel_self = 0.0
for self_pct, _, space, sym in perf_report("--no-children"):
    if space == "k":
        kernel_self += self_pct
        continue
    for name, pattern in USER_PARTS:
        if re.search(pattern, sym):
            parts[name] += self_pct
            break
    else:
        other_user += self_pct


def line(name, pct):
    print(f"| {name} | {pct:.1f} % | {pct * us_per_delivery / 100:.2f} |")


print(f"{report['label']}: {report['deliveries_per_sec']:.0f} deliveries/s, "
      f"{us_per_delivery} µs server CPU per delivery")
print()
print("| part | share of server CPU | µs per delivery |")
print("|---|---|---|")
line("kernel: send system call (of which loopback receive softirq %.1f %%)" % softirq, send)
line("kernel: everything else (epoll, futex, scheduling, timers)", kernel_self - min(send, kernel_self))
for name, _ in USER_PARTS:
    line(name, parts[name])
line("the session loop itself (select), allocation and the rest", other_user)
line("**user space in all**", sum(parts.values()) + other_user)
