//! config.php as admins leave it: the literal PHP reader must answer with a
//! value or an error naming a line, never panic.
#![no_main]

use flarum_ws::forum::php_literal::parse_config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(error) = parse_config(&text) {
        assert!(error.line() >= 1);
    }
});
