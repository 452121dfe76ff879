//! `config::Config::parse` on arbitrary UTF-8 TOML. Relative paths resolve against a fixed
//! base directory; parsing does not touch the filesystem beyond that.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = pcad::config::Config::parse(text, Path::new("/etc/pcad"));
});
