<?php
// GET /start.php?id=ID&seconds=N starts job ID for N seconds the seed's way:
// exec() with "&", so the request returns at once and the job runs on. The
// shell that exec() starts exits at once, which leaves the job an orphan:
// the container's PID 1 adopts it, and it stays in Apache's process group.

header('Content-Type: text/plain');
$id = $_GET['id'] ?? '';
$seconds = $_GET['seconds'] ?? '';
if (!preg_match('/^[A-Za-z0-9_-]{1,64}$/', $id) || !ctype_digit($seconds)) {
    http_response_code(400);
    echo "usage: /start.php?id=ID&seconds=N (ID of letters, digits, - and _)\n";
    exit;
}

exec('php ' . escapeshellarg(dirname(__DIR__) . '/job.php') . ' ' . escapeshellarg($id) . ' ' . (int) $seconds . ' > /dev/null 2>&1 &');
echo "started $id\n";
