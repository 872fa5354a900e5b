//! A bundle archive read while it is still arriving (the runner downloads a `blob` bundle as the
//! materializer unpacks it): the plugin reads past the bytes on disk only once they are there, the
//! archive is checked whole at its end, and a download that fails or brings other bytes leaves the
//! workspace exactly as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aac_host::outcome::FailureKind;
use aac_host::plugin::materializer::{ArchiveArrival, ArrivalWriter, arrival};
use aac_host::plugin::{
    Integrity, MaterializeFailure, MaterializeOptions, MaterializeSummary, MaterializerPlugin,
};
use aac_host::runner::session::plugin_bundle;
use aac_tests::bundle::{Entry, archive, damage_contents, manifest_for, save, sha256_hex};
use aac_tests::{plugin, test_host};

const FILES: [&str; 4] = ["a.bin", "b.bin", "c.bin", "d.bin"];

async fn bundle_plugin() -> MaterializerPlugin {
    test_host(None)
        .load_materializer(&plugin("bundle"), &Integrity::default())
        .await
        .expect("the bundle plugin loads")
}

/// An archive of a few 256 KiB files, each of its own byte.
fn bundle_bytes() -> Vec<u8> {
    let entries: Vec<Entry> = FILES
        .iter()
        .map(|name| Entry::file(name, vec![name.as_bytes()[0]; 256 << 10]))
        .collect();
    archive(&manifest_for(&entries), &entries)
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The staging directory the materializer writes into, beside `workspace`, once it exists.
fn staging(workspace: &Path) -> Option<PathBuf> {
    let parent = workspace.parent().unwrap();
    names(parent)
        .into_iter()
        .find(|name| name.contains("aac-staging"))
        .map(|name| parent.join(name))
}

/// Writes `bytes[from..to]` to `file` in 64 KiB pieces, telling `writer` after each.
async fn write_range(
    file: &mut std::fs::File,
    writer: &ArrivalWriter,
    bytes: &[u8],
    from: usize,
    to: usize,
) {
    let mut at = from;
    while at < to {
        let end = (at + (64 << 10)).min(to);
        file.write_all(&bytes[at..end]).unwrap();
        at = end;
        writer.written(at as u64);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One test's scene: the plugin, a root holding the archive file (`bundle.tar`) and the
/// workspace (`ws`), the bytes that should arrive and the bundle reference that pins them.
struct Scene {
    plugin: MaterializerPlugin,
    root: tempfile::TempDir,
    workspace: PathBuf,
    bytes: Vec<u8>,
    bundle: aac_host::plugin::Bundle,
}

impl Scene {
    /// The scene, and the still empty archive file for the test's download to write.
    async fn new() -> (Self, std::fs::File) {
        let root = tempfile::tempdir().unwrap();
        let bytes = bundle_bytes();
        let bundle = plugin_bundle(&save(root.path(), "bundle.tar", &bytes));
        let file = std::fs::File::create(root.path().join("bundle.tar")).unwrap();
        let scene = Self {
            plugin: bundle_plugin().await,
            workspace: root.path().join("ws"),
            root,
            bytes,
            bundle,
        };
        (scene, file)
    }

    /// Materializes the bundle into the workspace while `download` brings its archive.
    async fn materialize_while(
        &self,
        arriving: ArchiveArrival,
        download: tokio::task::JoinHandle<()>,
    ) -> Result<MaterializeSummary, MaterializeFailure> {
        let options = MaterializeOptions {
            arriving: Some(arriving),
            ..Default::default()
        };
        let done = self
            .plugin
            .materialize(&self.bundle, &self.workspace, &options)
            .await;
        download.await.unwrap();
        done
    }

    /// Refused as `resource-bundle`, and nothing of the bundle stayed: the workspace is empty and
    /// no staging directory is left beside the archive.
    fn assert_landed_nothing(&self, failure: &MaterializeFailure) {
        assert_eq!(failure.kind, FailureKind::ResourceBundle, "{failure:?}");
        let left = names(&self.workspace);
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(names(self.root.path()), ["bundle.tar"], "no staging left");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_unpacks_what_arrived_before_the_rest_comes() {
    let (scene, mut file) = Scene::new().await;
    let (writer, arriving) = arrival();
    let ws = scene.workspace.clone();
    let sent = scene.bytes.clone();
    let download = tokio::spawn(async move {
        let half = sent.len() / 2;
        write_range(&mut file, &writer, &sent, 0, half).await;
        // The rest is held back until the plugin has written a file from the first half: a
        // materializer that waited for the whole archive would never get there.
        let mut waited = Duration::ZERO;
        while staging(&ws).is_none_or(|dir| !names(&dir).contains(&"a.bin".to_owned())) {
            assert!(
                waited < Duration::from_secs(20),
                "nothing unpacked from the first half"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            waited += Duration::from_millis(5);
        }
        write_range(&mut file, &writer, &sent, half, sent.len()).await;
        writer.complete(sent.len() as u64, sha256_hex(&sent));
    });
    let summary = scene
        .materialize_while(arriving, download)
        .await
        .expect("the bundle is materialized");
    assert_eq!(summary.bytes, 4 * (256 << 10));
    assert_eq!(names(&scene.workspace), FILES);
    for name in FILES {
        let content = std::fs::read(scene.workspace.join(name)).unwrap();
        assert_eq!(content, vec![name.as_bytes()[0]; 256 << 10], "{name}");
    }
    assert_eq!(
        names(scene.root.path()),
        ["bundle.tar", "ws"],
        "no staging left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_breaks_off_lands_nothing_and_says_why() {
    let (scene, mut file) = Scene::new().await;
    let (writer, arriving) = arrival();
    let sent = scene.bytes.clone();
    let download = tokio::spawn(async move {
        write_range(&mut file, &writer, &sent, 0, sent.len() * 3 / 4).await;
        writer.failed("the manager went away after 750 KiB".into());
    });
    let failure = scene
        .materialize_while(arriving, download)
        .await
        .expect_err("a bundle that did not arrive whole is refused");
    scene.assert_landed_nothing(&failure);
    assert!(
        failure.message.contains("did not arrive whole")
            && failure.message.contains("the manager went away"),
        "{failure:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_other_than_the_pinned_ones_are_refused_even_when_the_download_says_complete() {
    let (scene, mut file) = Scene::new().await;
    // One byte inside a file's contents: the tar stays valid, the size the same.
    let mut other = scene.bytes.clone();
    damage_contents(&mut other, b'c');
    let (writer, arriving) = arrival();
    let download = tokio::spawn(async move {
        write_range(&mut file, &writer, &other, 0, other.len()).await;
        // The download's own hash of what it wrote: honest, and not the pinned one.
        writer.complete(other.len() as u64, sha256_hex(&other));
    });
    let failure = scene
        .materialize_while(arriving, download)
        .await
        .expect_err("other bytes are refused");
    scene.assert_landed_nothing(&failure);
    assert!(failure.message.contains("sha256"), "{failure:?}");
}
