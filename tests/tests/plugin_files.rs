//! Loading plugin files: every bad file gets an error naming the file and what is wrong, and a
//! good one is compiled once and then loaded from the cache.

use std::path::Path;

use aac_host::plugin::{CacheState, World};
use aac_tests::{plugin, test_host};

async fn load_error(path: &Path) -> String {
    let host = test_host(None);
    match host.load_backend(path).await {
        Ok(_) => panic!("{} loaded, but it must be refused", path.display()),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_wasm_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.wasm");
    std::fs::write(&path, "#!/bin/sh\necho not a plugin\n").unwrap();
    let err = load_error(&path).await;
    assert!(
        err.contains("script.wasm is not a WebAssembly file"),
        "{err}"
    );
}

#[tokio::test]
async fn a_truncated_component_is_refused_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(plugin("shell")).unwrap();
    let path = dir.path().join("half.wasm");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&path).await;
    assert!(
        err.contains("half.wasm is not a valid WebAssembly component"),
        "{err}"
    );
    assert!(err.contains("truncated"), "{err}");
}

#[tokio::test]
async fn a_core_module_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let err = load_error(&path).await;
    assert!(
        err.contains("core.wasm is a core WebAssembly module, not a component"),
        "{err}"
    );
    assert!(err.contains("wasm32-wasip2"), "{err}");
}

#[tokio::test]
async fn a_component_of_another_world_is_refused_with_its_exports() {
    let path = plugin("test-other-world");
    let err = load_error(&path).await;
    let expected = format!("{} is a component of another world", path.display());
    assert!(err.contains(&expected), "{err}");
    assert!(err.contains("acme:widgets/render@1.0.0"), "{err}");
}

#[tokio::test]
async fn a_component_for_another_wit_version_names_both_versions() {
    let path = plugin("test-wrong-version");
    let err = load_error(&path).await;
    assert!(
        err.contains(&path.display().to_string()),
        "the file must be named: {err}"
    );
    assert!(
        err.contains(&path.display().to_string()),
        "the file must be named: {err}"
    );
    assert!(err.contains("was built for aac:plugin@9.9.9"), "{err}");
    assert!(err.contains("it loads aac:plugin 0.2.0, 0.1.0"), "{err}");
}

#[tokio::test]
async fn a_missing_file_is_named() {
    let err = load_error(Path::new("/nonexistent/codex.wasm")).await;
    assert!(
        err.contains("could not read plugin file /nonexistent/codex.wasm"),
        "{err}"
    );
}

#[tokio::test]
async fn the_second_load_comes_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let path = plugin("shell");

    let first = test_host(Some(cache.path()))
        .load_backend(&path)
        .await
        .unwrap();
    assert_eq!(first.cache_state(), CacheState::Miss);

    // A new host (a new process, as far as the cache knows) finds the artifact.
    let second = test_host(Some(cache.path()))
        .load_backend(&path)
        .await
        .unwrap();
    assert_eq!(second.cache_state(), CacheState::Hit);
    assert_eq!(second.identity().name, "shell");
    assert_eq!(second.identity().version, env!("CARGO_PKG_VERSION"));

    // A corrupted artifact is recompiled rather than trusted.
    let artifacts: Vec<_> = std::fs::read_dir(cache.path().join("plugins"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(
        artifacts.len(),
        1,
        "one artifact per plugin and engine: {artifacts:?}"
    );
    // Replaced, not rewritten in place: the loaded components above still map the old file.
    let corrupt = cache.path().join("corrupt.tmp");
    std::fs::write(&corrupt, b"garbage").unwrap();
    std::fs::rename(&corrupt, &artifacts[0]).unwrap();
    let third = test_host(Some(cache.path()))
        .load_backend(&path)
        .await
        .unwrap();
    assert_eq!(third.cache_state(), CacheState::Miss);
}

#[tokio::test]
async fn inspect_reports_world_version_imports_and_cache() {
    let cache = tempfile::tempdir().unwrap();
    let host = test_host(Some(cache.path()));
    let path = plugin("shell");
    let before = host.inspect(&path).await.unwrap();
    assert_eq!(before.shape.world, World::Backend);
    assert_eq!(before.shape.wit_version, "0.2.1");
    assert_eq!(before.cache, CacheState::Miss);
    assert!(
        before
            .shape
            .imports
            .iter()
            .any(|i| i == "aac:plugin/sandbox@0.2.1")
    );
    assert!(
        before
            .shape
            .exports
            .iter()
            .any(|e| e == "aac:plugin/adapter@0.2.1")
    );
    assert_eq!(before.name.as_deref(), Some("shell"));
    assert!(
        before
            .description
            .as_deref()
            .unwrap()
            .contains("shell script")
    );
    let after = host.inspect(&path).await.unwrap();
    assert_eq!(after.cache, CacheState::Hit);
}

#[tokio::test]
async fn a_materializer_built_with_the_sdk_targets_only_its_world() {
    let host = test_host(None);
    let path = plugin("test-touch-materializer");
    let inspection = host.inspect(&path).await.unwrap();
    assert_eq!(inspection.shape.world, World::Materializer);
    assert_eq!(inspection.shape.exports, ["aac:plugin/materialize@0.2.1"]);
    // The SDK generates both worlds; a materializer must not drag in the backend's imports.
    assert!(
        !inspection
            .shape
            .imports
            .iter()
            .any(|i| i.starts_with("aac:plugin/sandbox")),
        "{:?}",
        inspection.shape.imports
    );

    let err = load_error(&path).await;
    assert!(
        err.contains("is a materializer plugin, but a backend adapter was expected"),
        "{err}"
    );
}
