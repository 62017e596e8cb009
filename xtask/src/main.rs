//! `cargo xtask serve | test | bench`: the project's two commands (and the benchmarks), each
//! installing what it needs first, idempotently, from crates.io, npm and Debian only.
//!
//! - `serve`: builds the release PWA and `ferry-signal`, then serves both (app on
//!   `FERRY_HOST:FERRY_APP_PORT`, default 127.0.0.1:8080; signaling on `FERRY_SIGNAL_PORT`,
//!   default 3536). Flags: `--host ADDR --port N --signal-port N --ice URL[|USER|CRED]`.
//! - `test`: fmt, clippy (host and wasm32), host tests, wasm tests in headless Chromium, and
//!   the Playwright end-to-end specs inside a private network namespace.
//! - `bench`: the benchmarks (see README).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn e2e_dir() -> PathBuf {
    root().join("tests/e2e")
}

/// PATH with cargo's bin dir and the npm tools (binaryen's wasm-opt 132) first.
fn path_env() -> String {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    format!(
        "{}:{cargo_home}/bin:{}",
        e2e_dir().join("node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(root()).env("PATH", path_env());
    c
}

fn run(mut c: Command) -> Result<(), String> {
    eprintln!("$ {c:?}");
    let status = c.status().map_err(|e| format!("cannot start {c:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", c.get_program()))
    }
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = cmd(program, args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version of `name` pinned in Cargo.lock.
fn locked_version(name: &str) -> Result<String, String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| e.to_string())?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"")
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    Err(format!("{name} is not in Cargo.lock"))
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    run(cmd("rustup", &["target", "add", WASM_TARGET]))
}

fn ensure_cargo_tool(bin: &str, krate: &str, version: &str, locked: bool) -> Result<(), String> {
    let have = output(bin, &["--version"]).unwrap_or_default();
    if have.split_whitespace().any(|w| w == version) {
        return Ok(());
    }
    let mut args = vec!["install", krate, "--version", version];
    if locked {
        args.push("--locked");
    }
    run(cmd("cargo", &args))
}

fn ensure_npm() -> Result<(), String> {
    let dir = e2e_dir();
    let ok = dir.join("node_modules/.bin/wasm-opt").exists()
        && dir.join("node_modules/.bin/playwright").exists()
        && std::fs::read_to_string(dir.join("node_modules/.package-lock.json"))
            .ok()
            .zip(std::fs::read_to_string(dir.join("package-lock.json")).ok())
            // npm records what it installed; reinstall when the lock wants something else.
            .is_some_and(|(installed, wanted)| {
                [
                    "@playwright/test",
                    "@axe-core/playwright",
                    "binaryen",
                    "jsqr",
                    "pngjs",
                    "jszip",
                    "@automerge/automerge",
                ]
                .iter()
                .all(|pkg| {
                    let version = |lock: &str| {
                        let at = lock.find(&format!("\"node_modules/{pkg}\""))?;
                        let rest = &lock[at..];
                        let v = rest.find("\"version\"")?;
                        rest[v..].split('"').nth(3).map(str::to_owned)
                    };
                    version(&installed).is_some() && version(&installed) == version(&wanted)
                })
            });
    if ok {
        return Ok(());
    }
    let mut c = cmd("npm", &["ci", "--no-audit", "--no-fund"]);
    c.current_dir(dir);
    run(c)
}

/// Debian packages the browser tests need: Chromium, its driver, coturn (the TURN relay of the
/// relay-only journey and the NAT lab), iptables and openssl (the NAT lab).
fn ensure_chromium() -> Result<(), String> {
    if Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && Path::new("/usr/bin/turnserver").exists()
        && Path::new("/usr/sbin/iptables").exists()
        && Path::new("/usr/bin/openssl").exists()
    {
        return Ok(());
    }
    let sudo = output("id", &["-u"]).is_some_and(|u| u.trim() != "0");
    let apt = |args: &[&str]| {
        if sudo {
            let mut all = vec!["apt-get"];
            all.extend_from_slice(args);
            cmd("sudo", &all)
        } else {
            cmd("apt-get", args)
        }
    };
    run(apt(&["update"]))?;
    let mut install = apt(&[
        "install",
        "-y",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
        "coturn",
        "iptables",
        // The NAT lab's TURN-over-TLS listener gets a throwaway certificate.
        "openssl",
    ]);
    install.env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

fn ensure_build_tools() -> Result<(), String> {
    ensure_wasm_target()?;
    ensure_npm()?;
    ensure_cargo_tool("trunk", "trunk", TRUNK_VERSION, true)?;
    // Without --locked: wasm-bindgen-cli's own lock pins a crate version the registry lacks.
    ensure_cargo_tool(
        "wasm-bindgen",
        "wasm-bindgen-cli",
        &locked_version("wasm-bindgen")?,
        false,
    )
}

fn build_release() -> Result<(), String> {
    run(cmd("trunk", &["build", "--release", "--offline"]))?;
    run(cmd("cargo", &["build", "--release", "-p", "ferry-signal"]))
}

fn serve(args: &[String]) -> Result<(), String> {
    ensure_build_tools()?;
    build_release()?;
    let mut signal_args: Vec<String> = vec![
        "--app-dir".into(),
        root().join("dist").display().to_string(),
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mapped = match a.as_str() {
            "--host" => "--host",
            "--port" => "--app-port",
            "--signal-port" => "--port",
            "--ice" => "--ice",
            other => {
                return Err(format!(
                    "unknown flag {other}; use --host, --port, --signal-port, --ice"
                ));
            }
        };
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        signal_args.push(mapped.into());
        signal_args.push(v.clone());
    }
    let bin = root().join("target/release/ferry-signal");
    let refs: Vec<&str> = signal_args.iter().map(String::as_str).collect();
    eprintln!(
        "Open the printed app URL; on a phone use this machine's LAN address (start with --host 0.0.0.0)."
    );
    run(cmd(&bin.display().to_string(), &refs))
}

struct Steps {
    results: Vec<(String, bool, f64)>,
}

impl Steps {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<(), String>) -> bool {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let r = f();
        if let Err(e) = &r {
            eprintln!("FAILED: {name}: {e}");
        }
        self.results
            .push((name.to_owned(), r.is_ok(), t.elapsed().as_secs_f64()));
        r.is_ok()
    }
}

fn test() -> Result<(), String> {
    let mut s = Steps { results: vec![] };
    let tools = s.step(
        "install tools (rustup target, npm, trunk, wasm-bindgen, chromium)",
        || {
            ensure_build_tools()?;
            ensure_chromium()
        },
    );
    s.step("cargo fmt --check", || {
        run(cmd("cargo", &["fmt", "--all", "--", "--check"]))
    });
    s.step("clippy (host)", || {
        run(cmd(
            "cargo",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ))
    });
    if tools {
        s.step("clippy (wasm32)", || {
            run(cmd(
                "cargo",
                &[
                    "clippy",
                    "-p",
                    "ferry",
                    "--target",
                    WASM_TARGET,
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
            ))
        });
    }
    s.step("host tests (cargo test --workspace)", || {
        run(cmd("cargo", &["test", "--workspace"]))
    });
    // The vendored matchbox_socket is outside the workspace (not ours to lint); its own tests
    // cover our patches to it (the signaling resume of patch 12, natively).
    s.step("vendored matchbox_socket tests (its patches)", || {
        let target = root().join("target/vendored");
        let target = target.to_string_lossy();
        run(cmd(
            "cargo",
            &[
                "test",
                "--manifest-path",
                "crates/matchbox_socket/Cargo.toml",
                "--target-dir",
                &target,
            ],
        ))
    });
    if tools {
        s.step(
            "browser tests (wasm-bindgen-test in headless Chromium)",
            || {
                let mut c = cmd("cargo", &["test", "-p", "ferry", "--target", WASM_TARGET]);
                c.env("CHROMEDRIVER", "/usr/bin/chromedriver")
                    .env("WASM_BINDGEN_TEST_TIMEOUT", "120");
                run(c)
            },
        );
        let built = s.step("release build (trunk + ferry-signal)", build_release);
        if built {
            s.step(
                "end-to-end (Playwright, real WebRTC, private network namespace)",
                || run(cmd("unshare", &["-n", "bash", "tests/e2e/netns.sh"])),
            );
            s.step("NAT lab (TURN through symmetric NAT)", || {
                run(cmd("unshare", &["-n", "bash", "tests/e2e/natlab.sh"]))
            });
        }
    }
    eprintln!("\n==> summary");
    for (name, ok, secs) in &s.results {
        eprintln!(
            "  {} {name} ({secs:.0}s)",
            if *ok { "ok    " } else { "FAILED" }
        );
    }
    let passed = s.results.iter().filter(|r| r.1).count();
    let failed = s.results.len() - passed;
    println!("xtask: {passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} step(s) failed"))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(),
        Some("soak") => soak(),
        _ => Err("usage: cargo xtask serve [--host ADDR --port N --signal-port N --ice URL] | test | bench | soak".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The soak setting of the core's property tests: every decoder of outside bytes fuzzed with
/// 10,000 cases (`PROPTEST_CASES`) and the simulated networks run 100,000 (`FERRY_SOAK_CASES`),
/// optimized. Either variable set beforehand wins. Not part of `test`: it takes hours.
fn soak() -> Result<(), String> {
    let mut c = cmd(
        "cargo",
        &["test", "-p", "ferry-core", "--release", "--tests"],
    );
    for (var, default) in [("PROPTEST_CASES", "10000"), ("FERRY_SOAK_CASES", "100000")] {
        let value = std::env::var(var).unwrap_or_else(|_| default.into());
        eprintln!("soak: {var}={value}");
        c.env(var, value);
    }
    // The release profile is tuned for the wasm download; native tests want speed.
    c.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16");
    run(c)
}

/// npm packages only the benchmarks use (the Yjs baseline page and its signaling, esbuild to
/// bundle it): reinstall from the lock when one is missing.
fn ensure_bench_npm() -> Result<(), String> {
    let dir = e2e_dir();
    let missing = ["yjs", "y-webrtc", "y-indexeddb", "ws", "esbuild"]
        .iter()
        .any(|p| {
            !dir.join("node_modules")
                .join(p)
                .join("package.json")
                .exists()
        });
    if !missing {
        return Ok(());
    }
    let mut c = cmd("npm", &["ci", "--no-audit", "--no-fund"]);
    c.current_dir(dir);
    run(c)
}

/// `cargo bench` with native settings: the release profile is tuned for the wasm download
/// (`opt-level = "z"`, fat LTO), which would make host benches slow to build and unlike native.
fn cargo_bench(args: &[&str]) -> Command {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    let mut c = cmd("cargo", &all);
    let out = root().join("target/bench");
    c.env("FERRY_BENCH_OUT", &out)
        .env("CRITERION_HOME", out.join("criterion"))
        .env("CARGO_PROFILE_BENCH_OPT_LEVEL", "3")
        .env("CARGO_PROFILE_BENCH_LTO", "false")
        .env("CARGO_PROFILE_BENCH_CODEGEN_UNITS", "16");
    c
}

/// HOOK: the signaling load benchmark (issue #7, 1,000 peers in 100 rooms against the release
/// `ferry-signal`). Runs whichever of its two forms exists, and is skipped while neither does.
fn signal_load_bench() -> Result<(), String> {
    let signal = root().join("crates/signal");
    if signal.join("examples/load.rs").exists() {
        let mut c = cmd(
            "cargo",
            &[
                "run",
                "--release",
                "-p",
                "ferry-signal",
                "--example",
                "load",
            ],
        );
        c.env("FERRY_BENCH_OUT", root().join("target/bench"));
        run(c)
    } else if signal.join("benches/load.rs").exists() {
        run(cargo_bench(&["-p", "ferry-signal", "--bench", "load"]))
    } else {
        eprintln!("skipped: no crates/signal/examples/load.rs yet");
        Ok(())
    }
}

/// `cargo xtask bench`: criterion benches of ferry-core and the signaling load bench, then the
/// browser benches (Ferry and its baselines, real Chromium and WebRTC in a private network
/// namespace), which fold all results into one table. Prints it and writes
/// `target/bench/results.json`.
fn bench() -> Result<(), String> {
    let started = std::time::SystemTime::now();
    let mut s = Steps { results: vec![] };
    let tools = s.step(
        "install tools (rustup target, npm, trunk, wasm-bindgen, chromium)",
        || {
            ensure_build_tools()?;
            ensure_bench_npm()?;
            ensure_chromium()
        },
    );
    let built = tools && s.step("release build (trunk + ferry-signal)", build_release);
    s.step(
        "ferry-core benches (criterion: apply, save/load, sync bytes, per message)",
        || {
            run(cargo_bench(&[
                "-p",
                "ferry-core",
                "--bench",
                "sync",
                "--bench",
                "storage",
                "--bench",
                "per_message",
            ]))
        },
    );
    // The load bench builds ferry-signal with the bench profile into target/release: the
    // browser benches use a copy of the release build made before.
    let signal_bin = root().join("target/bench/ferry-signal");
    let built = built
        && s.step(
            "keep the release ferry-signal for the browser benches",
            || {
                std::fs::create_dir_all(root().join("target/bench")).map_err(|e| e.to_string())?;
                std::fs::copy(root().join("target/release/ferry-signal"), &signal_bin)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
    s.step("signaling load bench", signal_load_bench);
    if built {
        // Its result (target/bench/network_change.json) is folded into the table by bench.mjs.
        s.step(
            "network change in the NAT lab (ICE restart: time until texts flow again)",
            || {
                let mut c = cmd(
                    "unshare",
                    &["-n", "bash", "tests/e2e/natlab.sh", "-g", "changes network"],
                );
                c.env("FERRY_SIGNAL_BIN", &signal_bin)
                    .env("FERRY_BENCH_OUT", root().join("target/bench"));
                run(c)
            },
        );
        s.step(
            "browser benches (Ferry vs raw WebRTC, Yjs; private network namespace)",
            || {
                let mut c = cmd("unshare", &["-n", "bash", "tests/e2e/netns.sh", "--bench"]);
                c.env("FERRY_SIGNAL_BIN", &signal_bin);
                run(c)
            },
        );
    }
    let table = root().join("target/bench/results.md");
    let fresh = std::fs::metadata(&table)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= started);
    if fresh && let Ok(text) = std::fs::read_to_string(&table) {
        println!("\n{text}");
    }
    println!("| step | result | time |\n|---|---|---|");
    for (name, ok, secs) in &s.results {
        println!(
            "| {name} | {} | {secs:.0} s |",
            if *ok { "ok" } else { "FAILED" }
        );
    }
    println!(
        "\nresults: target/bench/results.json (table: target/bench/results.md, criterion: target/bench/criterion)"
    );
    let failed = s.results.iter().filter(|r| !r.1).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} bench step(s) failed"))
    }
}
