<?php
// Edited by hand: short arrays, comments, double quotes.
return [
    "debug" => true, # debugging
    'database' => [
        'driver' => "pgsql",
        'host' => "127.0.0.1",
        'port' => "5432",
        'database' => 'forum',
        'username' => 'forum',
        'password' => "pa\$\$word\n",
        'prefix' => null,
        'search_path' => 'public',
    ],
    'url' => 'http://localhost',
    /* trailing comma */
];
