//! Records the target triple the agent is built for; it picks release variants by it.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=FERRY_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
