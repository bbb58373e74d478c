<?php
// GET / lists the jobs: "held ID" for each lock file, "done ID TIME" for
// each finished job, in the order they finished.

header('Content-Type: text/plain');
foreach (glob(__DIR__ . '/lock/*.lock') as $lock) {
    echo 'held ', basename($lock, '.lock'), "\n";
}
echo @file_get_contents(dirname(__DIR__) . '/jobs.log');
