//! Store tests against a temporary data directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::{ArchivePolicy, Store, StoreError};

pub(crate) struct Entry<'a> {
    pub path: &'a str,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: &'a [u8],
    pub link: Option<&'a str>,
}

pub(crate) fn file<'a>(path: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        path,
        kind: tar::EntryType::Regular,
        mode: 0o644,
        data,
        link: None,
    }
}

pub(crate) fn dir(path: &str) -> Entry<'_> {
    Entry {
        path,
        kind: tar::EntryType::Directory,
        mode: 0o755,
        data: b"",
        link: None,
    }
}

pub(crate) fn manifest(name: &str, extra: &str) -> String {
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}",
        "labels":[{{"name":"version","value":"1.0"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]{extra}}}"#
    )
}

/// A gzip ACI from raw entries (names written as given, even hostile ones).
pub(crate) fn aci(manifest: &str, entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        let name = h.as_old_mut();
        name.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            name.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        builder.append(&h, data).unwrap();
    };
    add(
        "manifest",
        tar::EntryType::Regular,
        0o644,
        manifest.as_bytes(),
        None,
    );
    add("rootfs", tar::EntryType::Directory, 0o755, b"", None);
    for e in entries {
        add(e.path, e.kind, e.mode, e.data, e.link);
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

/// A store holding `example.com/a` (no files), rendered; and its ID.
fn store_with_one_image() -> (tempfile::TempDir, Store, skiff_spec::ImageId) {
    let (dir, store) = store();
    let id = store
        .import(
            aci(&manifest("example.com/a", ""), &[]).as_slice(),
            &ArchivePolicy::default(),
        )
        .unwrap()
        .id;
    store.render(&id).unwrap();
    (dir, store, id)
}

#[test]
fn imports_resolves_renders_and_verifies() {
    let (_dir, store) = store();
    let policy = ArchivePolicy::default();
    let base = aci(
        &manifest("example.com/base", ""),
        &[
            dir("rootfs/etc"),
            file("rootfs/etc/base", b"base"),
            file("rootfs/etc/shared", b"from base"),
        ],
    );
    let app = aci(
        &manifest(
            "example.com/app",
            r#","dependencies":[{"imageName":"example.com/base","labels":[{"name":"version","value":"1.0"}]}]"#,
        ),
        &[
            dir("rootfs/etc"),
            file("rootfs/etc/shared", b"from app"),
            file("rootfs/app", b"app"),
        ],
    );
    let base_id = store.import(base.as_slice(), &policy).unwrap();
    assert!(base_id.newly_added);
    assert!(!store.import(base.as_slice(), &policy).unwrap().newly_added);
    let app_id = store.import(app.as_slice(), &policy).unwrap().id;
    assert_eq!(store.images().unwrap().len(), 2);

    assert_eq!(store.resolve("example.com/app:1.0").unwrap().id, app_id);
    assert_eq!(store.resolve(&app_id.as_str()[..20]).unwrap().id, app_id);
    assert!(matches!(
        store.resolve("example.com/app:2.0"),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.resolve("sha512-ab").is_err());

    let tree = store.render(&app_id).unwrap();
    let rootfs = tree.rootfs();
    assert_eq!(
        std::fs::read(rootfs.join("etc/shared")).unwrap(),
        b"from app"
    );
    assert_eq!(std::fs::read(rootfs.join("etc/base")).unwrap(), b"base");
    assert_eq!(std::fs::read(rootfs.join("app")).unwrap(), b"app");
    // A second render reuses the tree.
    assert_eq!(store.render(&app_id).unwrap(), tree);

    let (checked, problems) = store.verify().unwrap();
    assert_eq!((checked, problems.len()), (2, 0));
    // Corrupt a blob: verify reports it.
    let blob = store.blob_path(&base_id.id);
    std::fs::write(&blob, aci(&manifest("example.com/base", ""), &[])).unwrap();
    let (_, problems) = store.verify().unwrap();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].image, base_id.id.to_string());
}

#[test]
fn missing_dependencies_are_named() {
    let (_dir, store) = store();
    let app = aci(
        &manifest(
            "example.com/app",
            r#","dependencies":[{"imageName":"example.com/nowhere"}]"#,
        ),
        &[],
    );
    let id = store
        .import(app.as_slice(), &ArchivePolicy::default())
        .unwrap()
        .id;
    let err = store.render(&id).unwrap_err().to_string();
    assert!(err.contains("example.com/nowhere"), "{err}");
}

#[test]
fn path_whitelist_filters_dependencies() {
    let (_dir, store) = store();
    let policy = ArchivePolicy::default();
    let base = aci(
        &manifest("example.com/base", ""),
        &[file("rootfs/keep", b"k"), file("rootfs/drop", b"d")],
    );
    store.import(base.as_slice(), &policy).unwrap();
    let app = aci(
        &manifest(
            "example.com/app",
            r#","dependencies":[{"imageName":"example.com/base"}],"pathWhitelist":["/keep","/mine"]"#,
        ),
        &[file("rootfs/mine", b"m")],
    );
    let id = store.import(app.as_slice(), &policy).unwrap().id;
    let rootfs = store.render(&id).unwrap().rootfs();
    assert!(rootfs.join("keep").exists());
    assert!(rootfs.join("mine").exists());
    assert!(!rootfs.join("drop").exists());
}

#[test]
fn gc_removes_leftovers_and_old_images_but_not_fresh_ones() {
    let (_dir, store, id) = store_with_one_image();
    // Leftovers of a crashed import: an unlocked staging file and an
    // unindexed blob that is no image (one that is gets indexed again).
    std::fs::write(store.layout().tmp().join("stage-dead"), b"x").unwrap();
    let orphan = store.layout().blobs().join("0".repeat(128));
    std::fs::write(&orphan, b"x").unwrap();
    // A live import's staging file is kept (it is named and locked from
    // the start: no unlocked name an importer killed early could leave).
    let live = store.stage().unwrap();
    let name = live
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with("stage-"), "{name}");
    assert_eq!(std::fs::read_dir(store.layout().tmp()).unwrap().count(), 2);
    store.release_pins();
    let report = store
        .gc(Duration::from_secs(3600), || in_use(&store, false))
        .unwrap();
    assert_eq!((report.staging_files, report.bad_blobs), (1, 1));
    assert!(!orphan.exists());
    assert!(live.path().exists());
    assert!(report.images.is_empty());
    assert_eq!(store.images().unwrap().len(), 1);
    drop(live);
    store.release_pins();
    let report = store.gc(Duration::ZERO, || in_use(&store, false)).unwrap();
    assert_eq!(report.images, [id.to_string()]);
    assert!(store.images().unwrap().is_empty());
    assert!(!store.layout().tree(&id).exists());
}

/// A use is recorded at most once a minute (a run of a stored image then
/// writes nothing to the index), and gc counts the minute in: an image
/// whose use was recorded just past the grace period may have been used
/// within it, and is kept.
#[test]
fn uses_are_recorded_once_a_minute_and_gc_counts_the_minute_in() {
    let (_dir, store, id) = store_with_one_image();
    let last_used = |store: &Store| store.images().unwrap()[0].last_used;
    let now = crate::db::now();

    // Recorded 30 s ago: the render of a rendered tree writes nothing.
    store.index().set_last_used(&id, now - 30);
    let before = store.index().changes();
    store.render(&id).unwrap();
    assert_eq!(store.index().changes(), before, "the index was written");
    assert_eq!(last_used(&store), now - 30);

    // Recorded over a minute ago: this use is recorded.
    store
        .index()
        .set_last_used(&id, now - crate::db::USE_RECORDED_EVERY - 1);
    store.render(&id).unwrap();
    assert!(last_used(&store) >= now, "{} < {now}", last_used(&store));

    // A recorded use 30 s past an hour's grace period: kept.
    let hour = Duration::from_secs(3600);
    store.index().set_last_used(&id, now - 3600 - 30);
    store.release_pins();
    let report = store.gc(hour, || in_use(&store, false)).unwrap();
    assert!(report.images.is_empty(), "{:?}", report.images);
    // More than a minute past it: collected.
    store
        .index()
        .set_last_used(&id, now - 3600 - crate::db::USE_RECORDED_EVERY - 2);
    store.release_pins();
    let report = store.gc(hour, || in_use(&store, false)).unwrap();
    assert_eq!(report.images, [id.to_string()]);
}

/// A grace period longer than i64's seconds keeps every image (it once
/// made the cutoff -1 seconds in the future: every image went).
#[test]
fn gc_with_a_grace_period_past_what_seconds_hold_keeps_every_image() {
    let (_dir, store, id) = store_with_one_image();
    store.index().set_last_used(&id, 0);
    for secs in [u64::MAX, i64::MAX as u64 + 1] {
        store.release_pins();
        let report = store
            .gc(Duration::from_secs(secs), || in_use(&store, false))
            .unwrap();
        assert!(report.images.is_empty(), "{secs}: {:?}", report.images);
    }
}

#[test]
fn labels_select_among_versions() {
    let (_dir, store) = store();
    let policy = ArchivePolicy::default();
    let v1 = store
        .import(aci(&manifest("example.com/a", ""), &[]).as_slice(), &policy)
        .unwrap()
        .id;
    let m2 = manifest("example.com/a", "").replace("\"1.0\"", "\"2.0\"");
    let v2 = store.import(aci(&m2, &[]).as_slice(), &policy).unwrap().id;
    let mut labels = BTreeMap::new();
    labels.insert("version".to_string(), "1.0".to_string());
    assert_eq!(
        store.find("example.com/a", &labels).unwrap().unwrap().id,
        v1
    );
    assert_eq!(store.resolve("example.com/a:2.0").unwrap().id, v2);
}

#[test]
fn gc_keeps_images_referenced_by_pods() {
    let (_dir, store) = store();
    let policy = ArchivePolicy::default();
    let used = store
        .import(
            aci(&manifest("example.com/used", ""), &[]).as_slice(),
            &policy,
        )
        .unwrap()
        .id;
    let unused = store
        .import(
            aci(&manifest("example.com/unused", ""), &[]).as_slice(),
            &policy,
        )
        .unwrap()
        .id;
    let pod = store
        .layout()
        .pods()
        .join("run/7c4e5f0a-0000-4000-8000-000000000001");
    std::fs::create_dir_all(&pod).unwrap();
    std::fs::write(
        pod.join("pod"),
        format!(
            r#"{{"acKind":"PodManifest","acVersion":"0.8.11","apps":[{{"name":"a","image":{{"id":"{used}"}}}}]}}"#
        ),
    )
    .unwrap();
    store.release_pins();
    let report = store.gc(Duration::ZERO, || in_use(&store, false)).unwrap();
    assert_eq!(report.images, [unused.to_string()]);
    assert_eq!(report.kept_in_use, 1);
    assert!(store.resolve("example.com/used").is_ok());
}

#[test]
fn images_of_live_pods_cannot_be_removed_and_their_trees_survive_gc() {
    let (_dir, store) = store();
    let id = store
        .import(
            aci(&manifest("example.com/x", ""), &[]).as_slice(),
            &ArchivePolicy::default(),
        )
        .unwrap()
        .id;
    store.render(&id).unwrap();
    let pod = store
        .layout()
        .pods()
        .join("prepared/11111111-0000-4000-8000-000000000000");
    std::fs::create_dir_all(&pod).unwrap();
    std::fs::write(pod.join("images"), format!("{id}\n")).unwrap();
    assert!(matches!(
        store.remove(&id, || in_use(&store, true)),
        Err(StoreError::InUse(_))
    ));
    // Once the pod has exited, the image may go, but its tree stays while
    // the pod exists.
    let exited = store
        .layout()
        .pods()
        .join("exited-garbage/11111111-0000-4000-8000-000000000000");
    std::fs::create_dir_all(exited.parent().unwrap()).unwrap();
    std::fs::rename(&pod, &exited).unwrap();
    store.release_pins();
    store.remove(&id, || in_use(&store, true)).unwrap();
    store.gc(Duration::ZERO, || in_use(&store, false)).unwrap();
    assert!(store.layout().tree(&id).exists());
    std::fs::remove_dir_all(&exited).unwrap();
    store.gc(Duration::ZERO, || in_use(&store, false)).unwrap();
    assert!(!store.layout().tree(&id).exists());
}

/// What `skiff_pod::Pods::images_in_use` answers for the pods under the
/// store's data dir (the store's callers pass it in).
fn in_use(store: &Store, live_only: bool) -> std::io::Result<std::collections::HashSet<String>> {
    let data_dir = store.layout().pods().parent().unwrap().to_path_buf();
    skiff_pod::Pods::new(&data_dir).images_in_use(live_only)
}

fn problems(report: &crate::fsck::FsckReport) -> Vec<crate::fsck::ProblemKind> {
    let mut kinds: Vec<_> = report.problems.iter().map(|p| p.kind).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    kinds
}

fn fsck(dir: &std::path::Path, repair: bool) -> crate::fsck::FsckReport {
    crate::fsck::fsck(dir, repair, false, || Ok(Default::default())).unwrap()
}

/// An image with a remote and a signature, as a fetch leaves it.
fn fetched(store: &Store, name: &str) -> crate::ImageId {
    let id = store
        .import(
            aci(
                &manifest(name, ""),
                &[dir("rootfs"), file("rootfs/a", b"a")],
            )
            .as_slice(),
            &ArchivePolicy::default(),
        )
        .unwrap()
        .id;
    store
        .set_remote(&crate::RemoteRecord {
            url: format!("https://{name}.aci"),
            image_id: id.clone(),
            etag: Some("\"e1\"".into()),
            max_age: 60,
            download_time: 1_700_000_000,
        })
        .unwrap();
    store.add_signature(&id, "ABCDEF0123", b"sig").unwrap();
    id
}

#[test]
fn a_deleted_index_is_rebuilt_from_blobs_and_records() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    let b = fetched(&store, "example.com/b");
    store.render(&a).unwrap();
    drop(store);
    let clean = fsck(dir.path(), false);
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}/cas/db.sqlite{suffix}", dir.path().display()));
    }
    let found = fsck(dir.path(), false);
    use crate::fsck::ProblemKind::*;
    assert_eq!(
        problems(&found),
        [
            BlobWithoutRow,
            BlobWithoutRow,
            RecordWithoutRow,
            RecordWithoutRow,
            RecordWithoutRow,
            RecordWithoutRow
        ]
    );
    assert_eq!(found.unrepaired(), 6);
    let repaired = fsck(dir.path(), true);
    assert_eq!(repaired.unrepaired(), 0);
    assert!(fsck(dir.path(), false).problems.is_empty());
    let store = Store::open(dir.path()).unwrap();
    for id in [&a, &b] {
        assert_eq!(store.index().signers(id).unwrap(), ["ABCDEF0123"]);
        let remote = &store.index().remotes_of(id).unwrap()[0];
        assert_eq!(
            (remote.etag.as_deref(), remote.max_age),
            (Some("\"e1\""), 60)
        );
    }
    assert_eq!(store.resolve("example.com/a").unwrap().id, a);
    assert!(store.render(&a).unwrap().rootfs().join("a").exists());
}

#[test]
fn an_unreadable_index_is_refused_with_advice_and_rebuilt() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    drop(store);
    let db = dir.path().join("cas/db.sqlite");
    let _ = std::fs::remove_file(dir.path().join("cas/db.sqlite-wal"));
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let err = Store::open(dir.path()).err().unwrap().to_string();
    assert!(err.contains("skiff image fsck --repair"), "{err}");
    let found = fsck(dir.path(), false);
    assert_eq!(
        problems(&found),
        [crate::fsck::ProblemKind::IndexUnreadable]
    );
    assert_eq!(fsck(dir.path(), true).unrepaired(), 0);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.index().signers(&a).unwrap(), ["ABCDEF0123"]);
}

#[test]
fn fsck_finds_and_removes_corruption_and_leftovers() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    let b = fetched(&store, "example.com/b");
    // One bit of a blob flipped; another blob gone; a layer that is not
    // what its digest says; a tree without its marker; a dead import.
    let blob = store.layout().blob(&a);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    std::fs::remove_file(store.layout().blob(&b)).unwrap();
    let layer = store.layout().layers().join("1".repeat(64));
    std::fs::write(&layer, b"not it").unwrap();
    let tree = store.layout().trees().join("f".repeat(128));
    std::fs::create_dir_all(tree.join("rootfs")).unwrap();
    std::fs::write(store.layout().tmp().join("stage-dead"), b"x").unwrap();
    // A live import is left alone.
    let live = store.stage().unwrap();
    let found = fsck(dir.path(), false);
    use crate::fsck::ProblemKind::*;
    assert_eq!(
        problems(&found),
        [BadBlob, BadLayer, Leftover, RowWithoutBlob, UnfinishedTree]
    );
    assert_eq!(found.in_progress, 1);
    let repaired = fsck(dir.path(), true);
    assert_eq!(repaired.unrepaired(), 0);
    assert!(live.path().exists());
    assert!(!layer.exists() && !tree.exists() && !blob.exists());
    assert!(fsck(dir.path(), false).problems.is_empty());
    assert!(store.images().unwrap().is_empty());
    // Their records went with them.
    assert!(store.index().remotes().unwrap().is_empty());
    assert!(store.records().remotes().unwrap().records.is_empty());
    assert!(store.records().signatures().unwrap().records.is_empty());
}

#[test]
fn an_index_of_the_first_schema_gets_its_records_when_opened() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    drop(store);
    std::fs::remove_dir_all(dir.path().join("cas/records")).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("cas/db.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.records().remotes().unwrap().records.len(), 1);
    assert_eq!(store.records().signatures().unwrap().records[0].image, a);
    assert!(fsck(dir.path(), false).problems.is_empty());
}

#[test]
fn gc_indexes_a_blob_whose_row_was_lost() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    drop(store);
    std::fs::remove_file(dir.path().join("cas/db.sqlite")).unwrap();
    let _ = std::fs::remove_file(dir.path().join("cas/db.sqlite-wal"));
    let store = Store::open(dir.path()).unwrap();
    store.release_pins();
    let report = store
        .gc(Duration::from_secs(3600), || in_use(&store, false))
        .unwrap();
    assert_eq!((report.reindexed_blobs, report.bad_blobs), (1, 0));
    assert_eq!(store.resolve("example.com/a").unwrap().id, a);
}

#[test]
fn an_image_a_command_in_progress_uses_is_kept_from_gc_and_rm() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    // The importing process holds its pin (this one); another process
    // collects: it must keep the image.
    let other = Store::open(dir.path()).unwrap();
    let report = other.gc(Duration::ZERO, || Ok(Default::default())).unwrap();
    assert_eq!((report.images.len(), report.kept_busy), (0, 1));
    store.release_pins();
    // Another process's pin (flock(1) holding it shared) keeps it from rm;
    // this process's own pin does not (it is done with the image).
    let mut holder = std::process::Command::new("flock")
        .args(["-s", "-o"])
        .arg(store.layout().pin(&a))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    let busy = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        matches!(
            other.remove(&a, || Ok(Default::default())),
            Err(StoreError::Busy(_))
        )
    });
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(busy, "rm removed an image another process had pinned");
    let report = other.gc(Duration::ZERO, || Ok(Default::default())).unwrap();
    assert_eq!(report.images, [a.to_string()]);
    // A pin taken after the image went says so.
    assert!(!store.pin(&a).unwrap());
}

#[test]
fn fifos_and_symlinks_where_fsck_and_gc_look_are_leftovers_not_traps() {
    let (dir, store) = store();
    let a = fetched(&store, "example.com/a");
    // A FIFO among the staging files would block an open for reading.
    let fifo = store.layout().tmp().join("stage-fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    // A signature "record" that is a symlink to a directory elsewhere.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join("ABCD"), b"not a record").unwrap();
    let link = store.records().signatures_dir().join("e".repeat(128));
    std::os::unix::fs::symlink(elsewhere.path(), &link).unwrap();
    let found = fsck(dir.path(), false);
    use crate::fsck::ProblemKind::*;
    assert_eq!(problems(&found), [Leftover, StrayRecord]);
    assert_eq!(fsck(dir.path(), true).unrepaired(), 0);
    assert!(!fifo.exists() && std::fs::symlink_metadata(&link).is_err());
    assert!(elsewhere.path().join("ABCD").exists(), "followed the link");
    assert_eq!(store.index().signers(&a).unwrap(), ["ABCDEF0123"]);
    // gc, too, takes a FIFO for a leftover instead of waiting on it.
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    store.release_pins();
    let report = store
        .gc(Duration::from_secs(3600), || Ok(Default::default()))
        .unwrap();
    assert_eq!(report.staging_files, 1);
}

#[test]
fn a_manifest_that_cannot_be_read_back_once_written_is_refused_at_import() {
    let (_dir, store) = store();
    // Found by `cargo xtask fuzz` (image_manifest): a label with no "name"
    // key passes appc's parser (as actool's) but is written back with an
    // empty name, which no parser accepts: the image could not be rendered.
    let nameless = manifest("example.com/a", "")
        .replace(r#"{"name":"version","value":"1.0"}"#, r#"{"value":"1.0"}"#);
    let err = store
        .import(aci(&nameless, &[]).as_slice(), &ArchivePolicy::default())
        .unwrap_err();
    assert!(matches!(err, StoreError::UnstorableManifest(_)), "{err}");
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn images_are_found_by_their_exact_signature() {
    let (_dir, store) = store();
    let a = fetched(&store, "example.com/a");
    let b = fetched(&store, "example.com/b");
    store.add_signature(&b, "0123ABCDEF", b"other").unwrap();
    let mut both = vec![a.clone(), b.clone()];
    both.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(store.index().signed_with(b"sig").unwrap(), both);
    assert_eq!(store.index().signed_with(b"other").unwrap(), vec![b]);
    assert!(store.index().signed_with(b"si").unwrap().is_empty());
}
