#!/bin/sh
# Claude Code passes every tool command to this script as one argument. Marking the tool's
# process tree as the kernel's first choice under memory pressure means a tool that exhausts
# the sandbox's memory is the one killed, not the agent that would report it.
echo 1000 > /proc/self/oom_score_adj 2>/dev/null
exec bash -c "$1"
