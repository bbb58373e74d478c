<?php
// A background job as the seed's app runs them: a page starts it with
// exec("php job.php … > /dev/null 2>&1 &"), and it holds a lock file in
// public/lock/ for as long as it works.
//
//   php job.php ID SECONDS
//
// The lock holds the job's PID on its first line, so that drainit's
// --stale-pid can tell a crashed job's leftover from a live one. Removing
// the lock is the job's very last act: Apache signals its whole process
// group when it stops, and jobs started by mod_php are in that group, so
// whatever a job still did after its lock was gone could be cut short.

$id = $argv[1] ?? '';
$seconds = $argv[2] ?? '';
if (!preg_match('/^[A-Za-z0-9_-]{1,64}$/', $id) || !ctype_digit($seconds)) {
    fwrite(STDERR, "usage: php job.php ID SECONDS (ID of letters, digits, - and _)\n");
    exit(2);
}

$lock = __DIR__ . "/public/lock/$id.lock";
if (file_put_contents($lock, getmypid() . "\n") === false) {
    exit(1);
}

sleep((int) $seconds); // the work

file_put_contents(__DIR__ . '/jobs.log', sprintf("done %s %.6f\n", $id, microtime(true)), FILE_APPEND | LOCK_EX);
unlink($lock);
