//! Discovery: meta tags from an HTML answer, templates rendered with an
//! app's labels.
#![no_main]
use skiff_spec::discovery::{AppName, discover, meta_tags, render_template};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let tags = meta_tags(&html);
    if let Ok(app) = AppName::parse("example.com/app:1.0,os=linux,arch=amd64") {
        let _ = discover(&app, &tags);
    }
    let vars = vec![
        ("name".to_string(), "example.com/app".to_string()),
        ("version".to_string(), "1.0".to_string()),
    ];
    let _ = render_template(&html, &vars);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = AppName::parse(text);
    }
});
