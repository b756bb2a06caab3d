<?php
// What a PHP application behind the gateway binds: $_GET, $_POST, the HTTP_* variables of
// $_SERVER and a JSON body as json_decode(..., true) reads it (arrays, as most PHP code does).
// Router script for PHP's built-in server (`php -S host:port bind.php`): every path lands
// here. Each request is also appended, as one JSON line, to the file named by STACK_LOG, so
// a test can check what the application bound even when it only sees the gateway's answer.
$raw = file_get_contents('php://input');
$type = $_SERVER['CONTENT_TYPE'] ?? '';
$json = null;
if (stripos($type, 'json') !== false) {
    $json = json_decode($raw, true);
}
$server = [];
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, 'HTTP_', 5) === 0) {
        $server[$k] = $v;
    }
}
$bound = ['stack' => 'php', 'get' => $_GET, 'post' => $_POST, 'json' => $json, 'server' => $server];
$flags = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR
    | JSON_INVALID_UTF8_SUBSTITUTE | JSON_FORCE_OBJECT;
$out = json_encode($bound, $flags);
$log = getenv('STACK_LOG');
if ($log) {
    file_put_contents($log, $out . "\n", FILE_APPEND | LOCK_EX);
}
header('Content-Type: application/json');
echo $out;
