#!/bin/sh
# ACTIONS_RUNNER_HOOK_JOB_COMPLETED on an isolated runner: after each job,
# clean what a job can leave behind. The container hook's cleanup_job
# removes the job's record and every step's sandbox ended with its step;
# this removes records of jobs whose cleanup never ran (a runner killed
# mid-job) once they are a day old, and says how many records remain.
# The runner runs this script with `bash -e`, as its own user.
#
# Settings live here, not in the environment (see cloister-container-hook.sh).
CLOISTER_HOOK_STATE=/var/lib/cloister/github-hook
CLOISTER_STALE_MINUTES=1440

set -eu
jobs="$CLOISTER_HOOK_STATE/jobs"
if [ ! -d "$jobs" ]; then
    echo "cloister: no hook state at $jobs; nothing to clean"
    exit 0
fi
stale=$(/usr/bin/find "$jobs" -maxdepth 1 -type f -name '*.json' -mmin "+$CLOISTER_STALE_MINUTES" -print -delete | /usr/bin/wc -l)
/usr/bin/find "$jobs" -maxdepth 1 -type f -name '.*.tmp' -mmin +60 -delete
left=$(/usr/bin/find "$jobs" -maxdepth 1 -type f -name '*.json' | /usr/bin/wc -l)
echo "cloister: removed $stale stale job record(s); $left job record(s) in use"
