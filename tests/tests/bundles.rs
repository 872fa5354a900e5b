//! Resource bundles through the first-party `bundle` materializer: a local archive or a loopback
//! HTTP server; every hash verified; hostile entries, oversize bundles and mismatches refused with
//! the entry named, failure kind `resource-bundle`, and the workspace left exactly as it was.

use std::path::Path;
use std::sync::Arc;

use aac_host::config::Grants;
use aac_host::outcome::FailureKind;
use aac_host::plugin::Bundle;
use aac_host::plugin::{
    BundleLimits, Integrity, MaterializeFailure, MaterializeOptions, MaterializerPlugin,
};
use aac_host::runner::session::plugin_bundle;
use aac_tests::bundle::{Entry, archive, manifest_for, save, serve, sha256_hex};
use aac_tests::{plugin, test_host};

async fn bundle_plugin() -> MaterializerPlugin {
    test_host(None)
        .load_materializer(&plugin("bundle"), &Integrity::default())
        .await
        .expect("the bundle plugin loads")
}

/// Everything under `dir`, as sorted relative paths (links shown with their target).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let rel = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap();
                out.push(format!("{rel} -> {}", target.display()));
            } else if kind.is_dir() {
                out.push(format!("{rel}/"));
                pending.push(entry.path());
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

struct Scene {
    root: tempfile::TempDir,
}

impl Scene {
    /// A directory with a workspace holding one file of its own, and a place for archives.
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("runs/ws")).unwrap();
        std::fs::write(root.path().join("runs/ws/KEEP"), "mine").unwrap();
        std::fs::create_dir(root.path().join("archives")).unwrap();
        Self { root }
    }
    fn workspace(&self) -> std::path::PathBuf {
        self.root.path().join("runs/ws")
    }
    fn save(&self, bytes: &[u8]) -> Bundle {
        plugin_bundle(&save(
            &self.root.path().join("archives"),
            "bundle.tar",
            bytes,
        ))
    }
    /// The workspace is as it was and no staging directory is left beside it.
    fn assert_untouched(&self) {
        assert_eq!(tree(&self.workspace()), ["KEEP"]);
        assert_eq!(tree(&self.root.path().join("runs")), ["ws/", "ws/KEEP"]);
    }
}

async fn refused(
    plugin: &MaterializerPlugin,
    scene: &Scene,
    bundle: &Bundle,
    options: &MaterializeOptions,
) -> MaterializeFailure {
    let failure = plugin
        .materialize(bundle, &scene.workspace(), options)
        .await
        .expect_err("the bundle must be refused");
    assert_eq!(failure.kind, FailureKind::ResourceBundle, "{failure:?}");
    assert!(
        failure.message.contains("plugin `bundle` 0.1.0"),
        "{failure:?}"
    );
    scene.assert_untouched();
    failure
}

#[tokio::test]
async fn an_archive_is_materialized_with_every_hash_verified() {
    let plugin = bundle_plugin().await;
    assert_eq!(plugin.declared().http, ["*"], "the plugin declares HTTP");
    let scene = Scene::new();
    let entries = vec![
        Entry::Dir("docs".into()),
        Entry::file("README.md", "# hello\n"),
        Entry::file("src/lib.rs", "pub fn answer() -> u32 { 42 }\n"),
        Entry::file("src/deep/er/x.txt", vec![7u8; 100_000]),
        Entry::file("empty", ""),
        Entry::Symlink("docs/readme".into(), "../README.md".into()),
    ];
    let bundle = scene.save(&archive(&manifest_for(&entries), &entries));
    let summary = plugin
        .materialize(&bundle, &scene.workspace(), &MaterializeOptions::default())
        .await
        .expect("the bundle is materialized");
    assert_eq!(summary.bytes, 8 + 30 + 100_000);
    assert_eq!(
        tree(&scene.workspace()),
        [
            "KEEP",
            "README.md",
            "docs/",
            "docs/readme -> ../README.md",
            "empty",
            "src/",
            "src/deep/",
            "src/deep/er/",
            "src/deep/er/x.txt",
            "src/lib.rs"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(scene.workspace().join("docs/readme")).unwrap(),
        "# hello\n"
    );
    assert_eq!(
        std::fs::read(scene.workspace().join("src/deep/er/x.txt")).unwrap(),
        vec![7u8; 100_000]
    );
    assert_eq!(
        tree(&scene.root.path().join("runs"))
            .iter()
            .filter(|p| p.contains("staging"))
            .count(),
        0
    );
}

#[tokio::test]
async fn an_empty_or_missing_workspace_receives_the_whole_bundle() {
    let plugin = bundle_plugin().await;
    let dir = tempfile::tempdir().unwrap();
    let entries = vec![Entry::file("a/b.txt", "b")];
    let bundle = plugin_bundle(&save(
        dir.path(),
        "b.tar",
        &archive(&manifest_for(&entries), &entries),
    ));
    let workspace = dir.path().join("new/ws");
    plugin
        .materialize(&bundle, &workspace, &MaterializeOptions::default())
        .await
        .unwrap();
    assert_eq!(tree(&workspace), ["a/", "a/b.txt"]);
}

#[tokio::test]
async fn traversal_and_links_leaving_the_workspace_are_refused_by_entry() {
    let plugin = bundle_plugin().await;
    let cases: Vec<(Entry, &str, &str)> = vec![
        (Entry::file("../escape.txt", "x"), "../escape.txt", "`..`"),
        (
            Entry::file("a/../../escape.txt", "x"),
            "a/../../escape.txt",
            "`..`",
        ),
        (
            Entry::file("/tmp/aac-absolute.txt", "x"),
            "/tmp/aac-absolute.txt",
            "absolute path",
        ),
        (
            Entry::Symlink("etc".into(), "../../../etc".into()),
            "etc",
            "symbolic link to `../../../etc`, which leaves the workspace",
        ),
        (
            Entry::Symlink("passwd".into(), "/etc/passwd".into()),
            "passwd",
            "leaves the workspace",
        ),
        (
            Entry::HardLink("shadow".into(), "../../outside".into()),
            "shadow",
            "hard link",
        ),
    ];
    // Listed in the manifest (refused when it is read) or only in the archive (refused there).
    for ((hostile, entry, reason), listed) in cases
        .into_iter()
        .flat_map(|case| [(case.clone(), true), (case, false)])
    {
        let scene = Scene::new();
        std::fs::write(scene.root.path().join("outside"), "secret").unwrap();
        let entries = vec![Entry::file("ok.txt", "fine"), hostile];
        let manifest = manifest_for(if listed { &entries } else { &entries[..1] });
        let bundle = scene.save(&archive(&manifest, &entries));
        let failure = refused(&plugin, &scene, &bundle, &MaterializeOptions::default()).await;
        assert_eq!(failure.entry.as_deref(), Some(entry), "{failure:?}");
        assert!(
            failure.message.contains(&format!("entry `{entry}`")),
            "{failure:?}"
        );
        assert!(failure.message.contains(reason), "{reason}: {failure:?}");
        assert!(!scene.root.path().join("runs/escape.txt").exists());
        assert!(!scene.root.path().join("escape.txt").exists());
        assert!(!Path::new("/tmp/aac-absolute.txt").exists());
    }
}

#[tokio::test]
async fn a_file_below_a_link_is_refused() {
    let plugin = bundle_plugin().await;
    let scene = Scene::new();
    let entries = vec![
        Entry::Dir("d".into()),
        Entry::Symlink("l".into(), "d".into()),
        Entry::file("l/x", "through the link"),
    ];
    let bundle = scene.save(&archive(&manifest_for(&entries), &entries));
    let failure = refused(&plugin, &scene, &bundle, &MaterializeOptions::default()).await;
    assert_eq!(failure.entry.as_deref(), Some("l/x"));
    assert!(
        failure.message.contains("below the link `l`"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn hash_size_and_manifest_mismatches_name_the_entry() {
    let plugin = bundle_plugin().await;
    let options = MaterializeOptions::default();

    let scene = Scene::new();
    let entries = vec![Entry::file("a.txt", "one"), Entry::file("b.txt", "two")];
    let mut manifest = manifest_for(&entries);
    manifest["files"][1]["sha256"] = sha256_hex(b"TWO").into();
    let lying = archive(&manifest, &entries);
    // A reference without the archive's sha256: each file's hash is checked against the manifest.
    let mut unpinned = scene.save(&lying);
    unpinned.sha256 = None;
    let failure = refused(&plugin, &scene, &unpinned, &options).await;
    assert_eq!(failure.entry.as_deref(), Some("b.txt"));
    assert!(failure.message.contains("hash mismatch"), "{failure:?}");
    // A pinned archive: its own sha256 (checked by the host) covers every byte of every file, so
    // the manifest's per-file hashes are not recomputed and what is written is the archive's.
    let scene = Scene::new();
    plugin
        .materialize(&scene.save(&lying), &scene.workspace(), &options)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(scene.workspace().join("b.txt")).unwrap(),
        "two"
    );

    let scene = Scene::new();
    let mut manifest = manifest_for(&entries);
    manifest["files"][0]["size"] = 4.into();
    let failure = refused(
        &plugin,
        &scene,
        &scene.save(&archive(&manifest, &entries)),
        &options,
    )
    .await;
    assert_eq!(failure.entry.as_deref(), Some("a.txt"));
    assert!(
        failure.message.contains("3 bytes, but the manifest says 4"),
        "{failure:?}"
    );

    let scene = Scene::new();
    let manifest = manifest_for(&entries[..1]);
    let failure = refused(
        &plugin,
        &scene,
        &scene.save(&archive(&manifest, &entries)),
        &options,
    )
    .await;
    assert_eq!(failure.entry.as_deref(), Some("b.txt"));
    assert!(
        failure.message.contains("not in the manifest"),
        "{failure:?}"
    );

    let scene = Scene::new();
    let failure = refused(
        &plugin,
        &scene,
        &scene.save(&archive(&manifest_for(&entries), &entries[..1])),
        &options,
    )
    .await;
    assert_eq!(failure.entry.as_deref(), Some("b.txt"));
    assert!(
        failure.message.contains("missing from the archive"),
        "{failure:?}"
    );

    // The archive as a whole must match its reference.
    let scene = Scene::new();
    let mut bundle = scene.save(&archive(&manifest_for(&entries), &entries));
    bundle.sha256 = Some(sha256_hex(b"another archive"));
    let failure = refused(&plugin, &scene, &bundle, &options).await;
    assert!(
        failure.message.contains("the bundle's sha256 is"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn oversize_bundles_and_too_many_files_are_refused() {
    let plugin = bundle_plugin().await;
    let entries: Vec<Entry> = (0..10)
        .map(|i| Entry::file(&format!("f{i}"), vec![b'x'; 1000]))
        .collect();
    let bytes = archive(&manifest_for(&entries), &entries);

    let scene = Scene::new();
    let options = MaterializeOptions {
        bundle_limits: BundleLimits {
            max_files: 5,
            max_bytes: 1 << 20,
        },
        ..Default::default()
    };
    let failure = refused(&plugin, &scene, &scene.save(&bytes), &options).await;
    assert_eq!(failure.entry.as_deref(), Some("f5"));
    assert!(
        failure.message.contains("more than the limit of 5 entries"),
        "{failure:?}"
    );

    let scene = Scene::new();
    let options = MaterializeOptions {
        bundle_limits: BundleLimits {
            max_files: 100,
            max_bytes: 4500,
        },
        ..Default::default()
    };
    let failure = refused(&plugin, &scene, &scene.save(&bytes), &options).await;
    assert_eq!(failure.entry.as_deref(), Some("f4"));
    assert!(
        failure.message.contains("exceed the limit of 4500 bytes"),
        "{failure:?}"
    );

    // A bundle bigger than its reference announces is cut off.
    let scene = Scene::new();
    let mut bundle = scene.save(&bytes);
    bundle.size = Some(2048);
    bundle.sha256 = None;
    let failure = refused(&plugin, &scene, &bundle, &MaterializeOptions::default()).await;
    assert!(
        failure.message.contains("but its reference says 2048"),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_bundle_that_would_overwrite_the_workspace_is_refused() {
    let plugin = bundle_plugin().await;
    let scene = Scene::new();
    let entries = vec![Entry::file("new.txt", "n"), Entry::file("KEEP", "theirs")];
    let bundle = scene.save(&archive(&manifest_for(&entries), &entries));
    let failure = refused(&plugin, &scene, &bundle, &MaterializeOptions::default()).await;
    assert_eq!(failure.entry.as_deref(), Some("KEEP"));
    assert_eq!(
        std::fs::read_to_string(scene.workspace().join("KEEP")).unwrap(),
        "mine"
    );
}

fn http_bundle(addr: std::net::SocketAddr, bytes: &[u8]) -> Bundle {
    Bundle {
        kind: "http".into(),
        location: format!("http://{addr}/bundle.tar"),
        sha256: Some(sha256_hex(bytes)),
        size: Some(bytes.len() as u64),
    }
}

fn granting(http: &[String]) -> MaterializeOptions {
    MaterializeOptions {
        grants: Grants {
            http: http.to_vec(),
            env: vec![],
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn a_bundle_is_fetched_over_http_from_a_granted_host_only() {
    let plugin = Arc::new(bundle_plugin().await);
    let entries = aac_tests::bundle::many_files(50);
    let bytes = archive(&manifest_for(&entries), &entries);
    let addr = serve(bytes.clone()).await;
    let bundle = http_bundle(addr, &bytes);

    let scene = Scene::new();
    let summary = plugin
        .materialize(&bundle, &scene.workspace(), &granting(&[addr.to_string()]))
        .await
        .expect("a granted host is reachable");
    assert_eq!(
        summary.files,
        50 + 50 + 1,
        "50 files, their 50 directories (`many_files` uses one per file up to 100) and src/"
    );
    assert!(scene.workspace().join("src/mod007/file00007.rs").is_file());

    // Nothing granted: the request is refused before anything is sent, and the error says why.
    let scene = Scene::new();
    let failure = refused(&plugin, &scene, &bundle, &MaterializeOptions::default()).await;
    assert!(
        failure.message.contains(&format!("HTTP to {addr} refused")),
        "{failure:?}"
    );
    assert!(
        failure
            .message
            .contains("not in the effective allowlist []"),
        "{failure:?}"
    );

    // Fetched over HTTP, the archive as a whole is verified by the plugin.
    let scene = Scene::new();
    let mut wrong = bundle.clone();
    wrong.sha256 = Some(sha256_hex(b"another archive"));
    let failure = refused(&plugin, &scene, &wrong, &granting(&[addr.to_string()])).await;
    assert!(
        failure
            .message
            .contains("refused by the plugin: the bundle's sha256 is"),
        "{failure:?}"
    );

    // Another host granted (another port of the same address) does not open this one.
    let scene = Scene::new();
    let other = format!("127.0.0.1:{}", addr.port().wrapping_add(1).max(1));
    let failure = refused(
        &plugin,
        &scene,
        &bundle,
        &granting(std::slice::from_ref(&other)),
    )
    .await;
    assert!(
        failure.message.contains(&format!("allowlist [{other}]")),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_materializer_is_refused_unless_its_pin_and_signature_check_out() {
    use aac_host::plugin::TrustedKey;
    use ed25519_dalek::{Signer, SigningKey};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.wasm");
    let bytes = std::fs::read(plugin("bundle")).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let signing = SigningKey::from_bytes(&[9; 32]);
    let trusted =
        TrustedKey::from_hex("release", &hex::encode(signing.verifying_key().as_bytes())).unwrap();
    let host = test_host(None);
    let refusal = |integrity: Integrity| {
        let host = host.clone();
        let path = path.clone();
        async move {
            match host.load_materializer(&path, &integrity).await {
                Ok(_) => panic!("the plugin must be refused"),
                Err(err) => format!("{err:#}"),
            }
        }
    };

    let err = refusal(Integrity {
        sha256: Some(sha256_hex(b"something else")),
        ..Default::default()
    })
    .await;
    assert!(
        err.contains(&format!("plugin {} refused", path.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("its sha256 is {}", sha256_hex(&bytes))),
        "{err}"
    );

    let required = Integrity {
        sha256: Some(sha256_hex(&bytes)),
        keys: vec![trusted],
        require_signature: true,
    };
    let err = refusal(required.clone()).await;
    assert!(err.contains("bundle.wasm.sig does not exist"), "{err}");

    // Signed by another key: refused.
    let other = SigningKey::from_bytes(&[8; 32]);
    std::fs::write(
        dir.path().join("bundle.wasm.sig"),
        other.sign(&bytes).to_bytes(),
    )
    .unwrap();
    let err = refusal(required.clone()).await;
    assert!(
        err.contains("not valid for any trusted key (release)"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("bundle.wasm.sig"),
        signing.sign(&bytes).to_bytes(),
    )
    .unwrap();
    let plugin = host
        .load_materializer(&path, &required)
        .await
        .expect("signed and pinned");
    assert_eq!(plugin.identity().name, "bundle");
}
