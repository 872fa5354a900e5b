//! Writes `.materialized` (the bundle's location) into the workspace. Locations starting with
//! `hostile:` misbehave instead: `hostile:escape` tries to write beside the workspace and read
//! host files and reports what it observed as its error; `hostile:spin` never returns;
//! `hostile:partial` writes a file and then fails; `hostile:huge-error` returns an 8 MiB error;
//! `hostile:block` writes a file and then waits forever in a WASI pollable (no CPU used);
//! `hostile:link-chain` stages `d/l -> ..` and `y -> d/l/../../etc/passwd` (inside by their text,
//! outside once resolved) and reports success. `hostile:chmod` asks the host (`modes`, 0.2.1) to
//! make executable `../victim`, `/etc/passwd`, `/workspace/inside`, a link to a file, a file
//! through a link to `..`, a directory and a missing file, then `inside` (a file it wrote), and
//! reports each answer as its error: `denied <path> (<why>)`, `LEAK <path>` or `set <path>`.

use std::path::Path;

use aac_sdk::{BundleLimits, BundleRef, BundleSource, MaterializeError, Materializer, Summary};

struct Touch;

impl Materializer for Touch {
    fn materialize(
        bundle: BundleRef,
        workspace: &Path,
        _limits: BundleLimits,
    ) -> Result<Summary, MaterializeError> {
        let (BundleSource::Archive(location) | BundleSource::Http(location)) = &bundle.kind;
        match location.as_str() {
            "hostile:escape" => {
                let observe = |what: &str, result: std::io::Result<()>| match result {
                    Ok(()) => format!("LEAK {what}"),
                    Err(err) => format!("denied {what} ({err})"),
                };
                let seen = [
                    observe(
                        "write ../escaped",
                        std::fs::write(workspace.join("../escaped"), "x"),
                    ),
                    observe("write /tmp/escaped", std::fs::write("/tmp/escaped", "x")),
                    observe("read /etc/passwd", std::fs::read("/etc/passwd").map(|_| ())),
                ];
                return Err(MaterializeError::new(seen.join("; ")));
            }
            "hostile:spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hostile:huge-error" => return Err(MaterializeError::new("z".repeat(8 << 20))),
            "hostile:link-chain" => {
                let (root, _) = wasip2::filesystem::preopens::get_directories()
                    .into_iter()
                    .next()
                    .ok_or_else(|| MaterializeError::new("no preopened workspace"))?;
                let fail = |err: wasip2::filesystem::types::ErrorCode| {
                    MaterializeError::new(format!("{err:?}"))
                };
                root.create_directory_at("d").map_err(fail)?;
                root.symlink_at("..", "d/l").map_err(fail)?;
                root.symlink_at("d/l/../../etc/passwd", "y").map_err(fail)?;
                return Ok(Summary { files: 3, bytes: 0 });
            }
            "hostile:block" => {
                std::fs::write(workspace.join("half-written"), "x")
                    .map_err(|err| MaterializeError::new(err.to_string()))?;
                loop {
                    wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX).block();
                }
            }
            "hostile:chmod" => {
                let root = workspace.to_string_lossy().into_owned();
                std::fs::write(workspace.join("inside"), "x")
                    .map_err(|err| MaterializeError::new(err.to_string()))?;
                std::fs::create_dir(workspace.join("d"))
                    .map_err(|err| MaterializeError::new(err.to_string()))?;
                let (dir, _) = wasip2::filesystem::preopens::get_directories()
                    .into_iter()
                    .next()
                    .ok_or_else(|| MaterializeError::new("no preopened workspace"))?;
                let fail = |err: wasip2::filesystem::types::ErrorCode| {
                    MaterializeError::new(format!("{err:?}"))
                };
                dir.symlink_at("inside", "link").map_err(fail)?;
                dir.symlink_at("..", "up").map_err(fail)?;
                let absolute = format!("{root}/inside");
                let hostile = [
                    "../victim",
                    "/etc/passwd",
                    absolute.as_str(),
                    "link",
                    "up/victim",
                    "d",
                    "missing",
                ];
                let mut seen: Vec<String> = hostile
                    .iter()
                    .map(|path| match aac_sdk::modes::set_executable(path, true) {
                        Ok(()) => format!("LEAK {path}"),
                        Err(why) => format!("denied {path} ({why})"),
                    })
                    .collect();
                seen.push(match aac_sdk::modes::set_executable("inside", true) {
                    Ok(()) => "set inside".to_string(),
                    Err(why) => format!("refused inside ({why})"),
                });
                return Err(MaterializeError::new(seen.join("; ")));
            }
            "hostile:partial" => {
                std::fs::write(workspace.join("half-written"), "x")
                    .map_err(|err| MaterializeError::new(err.to_string()))?;
                return Err(MaterializeError::at_entry(
                    "second",
                    "failing after a write",
                ));
            }
            _ => {}
        }
        let marker = workspace.join(".materialized");
        std::fs::write(&marker, location.as_bytes())
            .map_err(|err| MaterializeError::at_entry(".materialized", err.to_string()))?;
        Ok(Summary {
            files: 1,
            bytes: location.len() as u64,
        })
    }
}

aac_sdk::export_materializer!(Touch);
