<?php return array (
  'database' => array ('driver' => 'sqlite', 'database' => getenv('DB_PATH'), 'prefix' => ''),
  'url' => 'https://' . $_SERVER['HTTP_HOST'],
);
