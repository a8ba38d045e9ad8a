//! The data directory's integrity: `meta.properties`, partition directories that the metadata
//! does not (or no longer) account for, and `strom storage recover-metadata`, which rebuilds a
//! damaged metadata log from the partition directories.
//!
//! The rule throughout: data is never deleted because something is missing from the metadata.
//! Only a replayed RemoveTopic record for a directory's own topic id removes it; anything else
//! unknown is renamed aside (`<topic>-<partition>.<unique id>-stray`, Kafka 3.7's name) and
//! kept, and damaged metadata files are renamed aside (`-damaged`), never overwritten.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bytes::Bytes;
use proto_kafka::records::RecordBatchDecoder;
use strom_log::batch::{compute_crc, parse_header};
use strom_log::{partition_metadata, DirLock, TopicPartition};
use tracing::{info, warn};
use uuid::Uuid;

use crate::metadata::metadata_log::{MetadataLog, METADATA_TOPIC};
use crate::metadata::records::MetadataRecord;
use crate::metadata::MetadataImage;

pub const META_PROPERTIES: &str = "meta.properties";
/// Kafka's suffix for a partition directory that no topic claims (KAFKA-15620, 3.7+).
pub const STRAY_DIR_SUFFIX: &str = "-stray";
/// Kafka's suffix for a directory whose topic was deleted, removed once renamed.
pub const DELETE_DIR_SUFFIX: &str = "-delete";
/// Strom's suffix for damaged metadata set aside by `recover-metadata`.
pub const DAMAGED_SUFFIX: &str = "-damaged";

/// What `meta.properties` says: which cluster and node the directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaState {
    Missing,
    /// Present but unusable; the reason.
    Invalid(String),
    Valid(MetaProperties),
}

pub fn meta_properties_path(dir: &Path) -> PathBuf {
    dir.join(META_PROPERTIES)
}

/// Reads `meta.properties`. Kafka's format: `version`, `cluster.id`, `node.id` lines.
pub fn read_meta_properties(dir: &Path) -> std::io::Result<MetaState> {
    const MAX_FILE_BYTES: u64 = 64 * 1024;
    let file = match std::fs::File::open(meta_properties_path(dir)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MetaState::Missing),
        Err(e) => return Err(e),
    };
    // A few lines when sound: a damaged file is not read whole into memory.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_FILE_BYTES + 1),
        &mut bytes,
    )?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Ok(MetaState::Invalid("it is far too large".into()));
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(MetaState::Invalid("it is not text".into()));
    };
    let mut version = None;
    let mut cluster_id = None;
    let mut node_id = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("version", v)) => version = Some(v.trim().to_string()),
            Some(("cluster.id", v)) => cluster_id = Some(v.trim().to_string()),
            Some(("node.id", v)) => node_id = Some(v.trim().to_string()),
            Some(_) => {}
            None => {
                return Ok(MetaState::Invalid(format!(
                    "line {line:?} is not key=value"
                )))
            }
        }
    }
    if !matches!(version.as_deref(), Some("0" | "1")) {
        return Ok(MetaState::Invalid("no version=1".into()));
    }
    let Some(cluster_id) = cluster_id.filter(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) else {
        return Ok(MetaState::Invalid("no valid cluster.id".into()));
    };
    let Some(node_id) = node_id
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| *n >= 0)
    else {
        return Ok(MetaState::Invalid("no valid node.id".into()));
    };
    Ok(MetaState::Valid(MetaProperties {
        cluster_id,
        node_id,
    }))
}

/// Writes `meta.properties` atomically (temp file, fsync, rename, fsync of the directory).
pub fn write_meta_properties(dir: &Path, meta: &MetaProperties) -> std::io::Result<()> {
    let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    write!(
        f,
        "version=1\ncluster.id={}\nnode.id={}\n",
        meta.cluster_id, meta.node_id
    )?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, meta_properties_path(dir))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The directories under `data_dir` named like a partition (`<topic>-<partition>`), except the
/// metadata log's.
pub fn partition_dirs(data_dir: &Path) -> std::io::Result<Vec<(TopicPartition, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Ok(tp) = TopicPartition::parse_dir_name(&name) else {
            continue;
        };
        if tp.topic == METADATA_TOPIC || !entry.file_type()?.is_dir() {
            continue;
        }
        out.push((tp, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Whether the metadata log directory holds any record bytes.
pub fn metadata_log_has_data(data_dir: &Path) -> bool {
    let dir = data_dir.join(format!("{METADATA_TOPIC}-0"));
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".log")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

/// An empty metadata log (no record at all) with partition directories beside it means the
/// log was lost, not that there are no topics: starting would set every directory aside.
pub fn check_metadata_covers_data(data_dir: &Path, image: &MetadataImage) -> anyhow::Result<()> {
    if image.offset >= 0 {
        return Ok(());
    }
    let partitions =
        partition_dirs(data_dir).with_context(|| format!("cannot list {}", data_dir.display()))?;
    if let Some((_, first)) = partitions.first() {
        bail!(
            "the metadata log is empty or missing, but {} holds {} partition directories (e.g. {}); \
             refusing to start. Run `strom storage recover-metadata --data-dir {}` to rebuild it \
             from them",
            data_dir.display(),
            partitions.len(),
            first.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// `log.fetch.verify.crc`: the fetched slice cut before its first batch that fails its header
/// or CRC check, which is logged (ERROR, file and position). A slice whose first batch is
/// bad is Kafka's CORRUPT_MESSAGE for the partition: damaged bytes are never sent as data.
pub fn verified_slice(
    partition: &dyn crate::partition::PartitionLog,
    mut slice: strom_log::FetchSlice,
) -> Result<strom_log::FetchSlice, i16> {
    const CORRUPT_MESSAGE: i16 = 2;
    const KAFKA_STORAGE_ERROR: i16 = 56;
    let (valid_bytes, bad) = match strom_log::verify::check_slice(&slice) {
        Ok(r) => r,
        Err(e) => {
            warn!(partition = %partition.topic_partition(), error = %e, "cannot read fetched bytes to verify them");
            return Err(KAFKA_STORAGE_ERROR);
        }
    };
    if let Some(bad) = bad {
        let file = partition.segment_path_containing(slice.first_offset);
        tracing::error!(
            partition = %partition.topic_partition(),
            file = %file.as_ref().map_or("?".to_string(), |f| f.display().to_string()),
            position = bad.position,
            offset = bad.offset.unwrap_or(-1),
            error = %bad.error,
            "fetch found a damaged record batch; not sent (run `strom storage verify`)"
        );
        if valid_bytes == 0 {
            return Err(CORRUPT_MESSAGE);
        }
        slice.size = valid_bytes;
    }
    Ok(slice)
}

/// A read that ran into damaged data (a consumer is stuck there: KAFKA_STORAGE_ERROR until the
/// data is repaired) is an ERROR naming file and position; at most once a minute per process,
/// since the consumer retries.
pub fn report_damaged_read(tp: &TopicPartition, error: &crate::partition::PartitionError) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_REPORT_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    const REPORT_INTERVAL_MS: i64 = 60_000;
    let crate::partition::PartitionError::Log(strom_log::LogError::Corrupt { .. }) = error else {
        return;
    };
    let now = crate::metadata::metadata_log::now_ms();
    let last = LAST_REPORT_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) < REPORT_INTERVAL_MS
        || LAST_REPORT_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    tracing::error!(partition = %tp, %error, "fetch reached damaged data; consumers cannot read past it (run `strom storage verify`)");
}

/// `<dir name>.<unique id><suffix>`: Kafka's naming for directories set aside.
fn aside_name(dir_name: &str, suffix: &str) -> String {
    format!("{dir_name}.{}{suffix}", Uuid::new_v4().simple())
}

/// The partition directory name inside an aside name (`<topic>-<partition>.<32 hex
/// digits><suffix>`), `None` for anything else: only names Strom (or Kafka) made are treated
/// as set aside.
pub fn parse_aside_name<'a>(name: &'a str, suffix: &str) -> Option<&'a str> {
    let (original, unique) = name.strip_suffix(suffix)?.rsplit_once('.')?;
    let hex = unique.len() == 32 && unique.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && TopicPartition::parse_dir_name(original).is_ok()).then_some(original)
}

/// Renames `path` to its aside name with `suffix` in the same parent directory, durably.
pub fn rename_aside(path: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other(format!("bad path {}", path.display())))?;
    let target = path.with_file_name(aside_name(name, suffix));
    std::fs::rename(path, &target)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(target)
}

/// Removes the directory of a partition whose topic was deleted: renamed `-delete` first, so
/// a crash midway leaves a directory the next start finishes removing, never a half-deleted
/// one that could be mistaken for live data.
pub fn delete_partition_dir(path: &Path) -> std::io::Result<()> {
    let doomed = rename_aside(path, DELETE_DIR_SUFFIX)?;
    std::fs::remove_dir_all(&doomed)
}

/// The topic id in a partition directory's `partition.metadata`, if it has a readable one.
pub fn dir_topic_id(dir: &Path) -> Option<Uuid> {
    match partition_metadata::read(dir) {
        Ok(id) => id.map(Uuid::from_bytes),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "unreadable partition.metadata");
            None
        }
    }
}

/// What `recover-metadata` did.
#[derive(Debug, Default)]
pub struct RecoverReport {
    /// Records of the damaged log that were read back and kept (its valid prefix).
    pub salvaged_records: usize,
    /// Why salvaging stopped, if it did before the end.
    pub salvage_stopped: Option<String>,
    /// Topics rebuilt from directories: (name, id, partition count).
    pub rebuilt_topics: Vec<(String, Uuid, i32)>,
    /// Stray directories taken back under their partition name.
    pub adopted_strays: Vec<PathBuf>,
    /// Directories left alone, and why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files and directories renamed aside (never deleted).
    pub kept_aside: Vec<PathBuf>,
    pub wrote_meta_properties: Option<String>,
}

pub struct RecoverOptions {
    /// For a new `meta.properties` when the old one is missing or damaged.
    pub cluster_id: Option<String>,
    pub node_id: i32,
}

/// Rebuilds the metadata log of `data_dir` from what can be trusted: the valid prefix of the
/// old log (records up to the first damaged batch) plus a topic for every partition directory
/// it does not cover, named by the directory and identified by its `partition.metadata`.
/// The old log directory is renamed aside, not deleted. Refuses while a broker holds the
/// directory lock.
pub fn recover_metadata(data_dir: &Path, opts: &RecoverOptions) -> anyhow::Result<RecoverReport> {
    if !data_dir.is_dir() {
        bail!("{} is not a directory", data_dir.display());
    }
    let _lock = DirLock::acquire(data_dir)?;
    let mut report = RecoverReport::default();
    check_or_write_meta_properties(data_dir, opts, &mut report)?;

    let metadata_dir = data_dir.join(format!("{METADATA_TOPIC}-0"));
    let (salvaged, stopped) = if metadata_dir.exists() {
        salvage(&metadata_dir)?
    } else {
        (Vec::new(), Some("no metadata log".to_string()))
    };
    report.salvage_stopped = stopped;
    let mut image = MetadataImage::empty();
    let mut records = Vec::new();
    for r in salvaged {
        if image.apply(records.len() as i64, &r).is_ok() {
            records.push(r);
        }
    }
    report.salvaged_records = records.len();

    adopt_strays(data_dir, &image, &mut report)?;
    let (found, max_producer_id) = scan_partition_dirs(data_dir, &image, &mut report)?;
    let mut new_records = records_for_found(data_dir, opts.node_id, found, &image, &mut report);
    if max_producer_id >= image.next_producer_id {
        new_records.push(MetadataRecord::ProducerIds {
            next_producer_id: max_producer_id.saturating_add(1),
        });
    }
    records.extend(new_records);
    write_rebuilt(data_dir, &metadata_dir, &records, &mut report)?;
    Ok(report)
}

/// meta.properties of `opts.node_id`: kept if valid (refused if another node's), else the
/// damaged one set aside and a new one written.
fn check_or_write_meta_properties(
    data_dir: &Path,
    opts: &RecoverOptions,
    report: &mut RecoverReport,
) -> anyhow::Result<()> {
    match read_meta_properties(data_dir)
        .with_context(|| format!("cannot read {}", meta_properties_path(data_dir).display()))?
    {
        MetaState::Valid(m) => {
            if m.node_id != opts.node_id {
                bail!(
                    "{} belongs to node.id {}, not {} (give --node-id {})",
                    meta_properties_path(data_dir).display(),
                    m.node_id,
                    opts.node_id,
                    m.node_id
                );
            }
        }
        state => {
            let path = meta_properties_path(data_dir);
            if state != MetaState::Missing {
                let aside = rename_aside(&path, DAMAGED_SUFFIX)
                    .with_context(|| format!("cannot rename {}", path.display()))?;
                report.kept_aside.push(aside);
            }
            let cluster_id = match &opts.cluster_id {
                Some(c) => c.clone(),
                None => new_cluster_id(),
            };
            write_meta_properties(
                data_dir,
                &MetaProperties {
                    cluster_id: cluster_id.clone(),
                    node_id: opts.node_id,
                },
            )
            .with_context(|| format!("cannot write {}", path.display()))?;
            report.wrote_meta_properties = Some(cluster_id);
        }
    }

    Ok(())
}

/// Topic name -> (ids seen in partition.metadata, partitions, highest leader epoch).
type FoundTopics = BTreeMap<String, (BTreeSet<Uuid>, BTreeSet<i32>, i32)>;

/// What the partition directories say of their topics, and the highest producer id in any
/// batch; directories of deleted topic ids are skipped.
fn scan_partition_dirs(
    data_dir: &Path,
    image: &MetadataImage,
    report: &mut RecoverReport,
) -> anyhow::Result<(FoundTopics, i64)> {
    let mut found = FoundTopics::new();
    let mut max_producer_id = -1i64;
    for (tp, path) in partition_dirs(data_dir)? {
        let id = dir_topic_id(&path);
        let verified = strom_log::verify::verify_log_dir(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(p) = verified.problems.first() {
            warn!(dir = %path.display(), problem = %p, "partition log is damaged; its topic is rebuilt all the same (run `strom storage verify`)");
        }
        max_producer_id = max_producer_id.max(verified.max_producer_id);
        if let Some(id) = id {
            if image.deleted_topic_ids.contains(&id) {
                report
                    .skipped
                    .push((path, format!("its topic id {id} was deleted")));
                continue;
            }
        }
        let entry = found.entry(tp.topic.clone()).or_default();
        entry.0.extend(id);
        entry.1.insert(tp.partition);
        entry.2 = entry.2.max(verified.max_leader_epoch);
    }

    Ok((found, max_producer_id))
}

/// The records that give the found topics and partitions missing from `image` a place, led
/// by `node` in an epoch above any their batches carry.
fn records_for_found(
    data_dir: &Path,
    node: i32,
    found: FoundTopics,
    image: &MetadataImage,
    report: &mut RecoverReport,
) -> Vec<MetadataRecord> {
    let partition_record = |topic_id: Uuid, partition: i32, epoch: i32| MetadataRecord::Partition {
        topic_id,
        partition,
        replicas: vec![node],
        isr: vec![node],
        leader: node,
        leader_epoch: epoch,
        partition_epoch: epoch,
    };
    let mut new_records = Vec::new();
    for (name, (ids, partitions, max_epoch)) in found {
        // A new leadership: above every epoch the batches carry.
        let epoch = max_epoch.saturating_add(1).max(0);
        let max_partition = partitions.iter().copied().max().unwrap_or(0);
        if let Some(existing) = image.topic(&name) {
            if ids.iter().any(|id| *id != existing.id) {
                report.skipped.push((
                    data_dir.join(&name),
                    format!(
                        "directories of topic {name} carry another topic id than the metadata's {}",
                        existing.id
                    ),
                ));
                continue;
            }
            for p in 0..=max_partition {
                if !existing.partitions.contains_key(&p) {
                    new_records.push(partition_record(existing.id, p, epoch));
                }
            }
            continue;
        }
        if ids.len() > 1 {
            report.skipped.push((
                data_dir.join(&name),
                format!("the partitions of topic {name} carry different topic ids {ids:?}"),
            ));
            continue;
        }
        let id = ids.iter().next().copied().unwrap_or_else(Uuid::new_v4);
        if image.topic_by_id(&id).is_some() || image.deleted_topic_ids.contains(&id) {
            report.skipped.push((
                data_dir.join(&name),
                format!("topic id {id} belongs to another topic"),
            ));
            continue;
        }
        new_records.push(MetadataRecord::Topic {
            name: name.clone(),
            topic_id: id,
        });
        // Kafka numbers partitions 0..n: a missing directory becomes an empty partition.
        for p in 0..=max_partition {
            new_records.push(partition_record(id, p, epoch));
        }
        if name == crate::group::OFFSETS_TOPIC {
            // Group offsets must stay compacted, never expire by retention.
            new_records.push(MetadataRecord::Config {
                resource_type: crate::metadata::records::RESOURCE_TOPIC,
                resource_name: name.clone(),
                name: "cleanup.policy".into(),
                value: Some("compact".into()),
            });
        }
        report.rebuilt_topics.push((name, id, max_partition + 1));
    }

    new_records
}

/// Sets the old metadata log aside, writes `records` as the new one, and gives rebuilt
/// partition directories their partition.metadata.
fn write_rebuilt(
    data_dir: &Path,
    metadata_dir: &Path,
    records: &[MetadataRecord],
    report: &mut RecoverReport,
) -> anyhow::Result<()> {
    if metadata_dir.exists() {
        let aside = rename_aside(metadata_dir, DAMAGED_SUFFIX)
            .with_context(|| format!("cannot rename {}", metadata_dir.display()))?;
        info!(dir = %aside.display(), "old metadata log kept aside");
        report.kept_aside.push(aside);
    }
    let (mut log, empty) = MetadataLog::open(data_dir).context("cannot create the metadata log")?;
    let rebuilt = log
        .commit(&empty, records)
        .context("cannot write the rebuilt metadata log")?;
    log.close()
        .context("cannot close the rebuilt metadata log")?;
    // Every partition directory now has a topic; give the rebuilt ones their id file.
    for (tp, path) in partition_dirs(data_dir)? {
        if let Some(t) = rebuilt.topic(&tp.topic) {
            if dir_topic_id(&path).is_none() {
                partition_metadata::write(&path, t.id.into_bytes())?;
            }
        }
    }
    Ok(())
}

/// Takes stray directories back under their partition's name when that name is free and the
/// (salvaged) metadata does not say their topic was deleted.
fn adopt_strays(
    data_dir: &Path,
    image: &MetadataImage,
    report: &mut RecoverReport,
) -> anyhow::Result<()> {
    let mut strays = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(original) = parse_aside_name(&name, STRAY_DIR_SUFFIX) else {
            continue;
        };
        if !entry.path().is_dir() {
            continue;
        }
        strays.push((entry.path(), original.to_string()));
    }
    strays.sort();
    let mut taken: HashSet<String> = HashSet::new();
    for (path, original) in strays {
        let target = data_dir.join(&original);
        if target.exists() || taken.contains(&original) {
            report
                .skipped
                .push((path, format!("{original} exists already")));
            continue;
        }
        if dir_topic_id(&path).is_some_and(|id| image.deleted_topic_ids.contains(&id)) {
            report
                .skipped
                .push((path, "its topic was deleted".to_string()));
            continue;
        }
        std::fs::rename(&path, &target)
            .with_context(|| format!("cannot rename {} back", path.display()))?;
        taken.insert(original);
        report.adopted_strays.push(path);
    }
    sync_dir(data_dir)?;
    Ok(())
}

/// The records of the metadata log in `dir` up to the first batch that fails its checks (CRC,
/// framing, offset continuity) or does not decode. Read-only.
fn salvage(dir: &Path) -> anyhow::Result<(Vec<MetadataRecord>, Option<String>)> {
    let mut files: Vec<(i64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".log") {
            if let Ok(base) = stem.parse::<i64>() {
                files.push((base, entry.path()));
            }
        }
    }
    files.sort();
    let mut records = Vec::new();
    let mut next_offset = files.first().map_or(0, |f| f.0);
    // A metadata segment is at most 64 MiB plus one batch: anything larger is not one.
    const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
    for (_, path) in files {
        let len = std::fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        if len > MAX_SEGMENT_BYTES {
            let why = format!(
                "{} is {len} bytes, too large for a metadata segment",
                path.display()
            );
            return Ok((records, Some(why)));
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let stop = |why: String| format!("{} at byte {pos}: {why}", path.display());
            let header = match parse_header(&bytes[pos..], pos as u64) {
                Ok(h) => h,
                Err(e) => return Ok((records, Some(stop(e.to_string())))),
            };
            let end = pos + header.size_bytes();
            if end > bytes.len() {
                return Ok((records, Some(stop("batch runs past the end".into()))));
            }
            if compute_crc(&bytes[pos..end]) != header.crc {
                return Ok((records, Some(stop("CRC mismatch".into()))));
            }
            if header.base_offset != next_offset {
                return Ok((
                    records,
                    Some(stop(format!(
                        "baseOffset {} where {next_offset} was expected",
                        header.base_offset
                    ))),
                ));
            }
            let mut batch = Bytes::copy_from_slice(&bytes[pos..end]);
            let sets = match RecordBatchDecoder::decode_all(&mut batch) {
                Ok(s) => s,
                Err(e) => return Ok((records, Some(stop(e.to_string())))),
            };
            for set in sets {
                for record in set.records {
                    let value = record.value.unwrap_or_default();
                    match serde_json::from_slice::<MetadataRecord>(&value) {
                        Ok(r) => records.push(r),
                        Err(e) => {
                            return Ok((
                                records,
                                Some(stop(format!("record {}: {e}", record.offset))),
                            ))
                        }
                    }
                }
            }
            next_offset = header.next_offset();
            pos = end;
        }
    }
    Ok((records, None))
}

/// Kafka's cluster ids are a UUID in URL-safe base64 without padding (22 characters).
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(id, new_cluster_id());
    }
    use crate::replica_manager::ReplicaManager;

    fn topic(name: &str, id: Uuid) -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::Topic {
                name: name.into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: 0,
                replicas: vec![0],
                isr: vec![0],
                leader: 0,
                leader_epoch: 0,
                partition_epoch: 0,
            },
        ]
    }

    fn commit(data_dir: &Path, records: &[MetadataRecord]) -> MetadataImage {
        let (mut log, image) = MetadataLog::open(data_dir).unwrap();
        let image = log.commit(&image, records).unwrap();
        log.close().unwrap();
        image
    }

    /// A partition directory with one real batch in it (through a replica manager).
    fn host(data_dir: &Path, image: &MetadataImage) -> ReplicaManager {
        let rm = ReplicaManager::new(0, data_dir);
        rm.apply_image(image, &RawConfig::defaults()).unwrap();
        for p in rm.all() {
            let mut batch = crate::metadata::metadata_log::encode_internal_batch(
                [(None, Some(Bytes::from_static(b"v")))],
                1,
            )
            .unwrap();
            p.with_log(|log| log.append_as_leader(&mut batch, 0, 1))
                .unwrap()
                .unwrap();
        }
        rm
    }

    fn close(rm: ReplicaManager) {
        for p in rm.all() {
            p.with_log(|log| log.close()).unwrap().unwrap();
        }
    }

    /// Every metadata commit moves the recovery point on disk, so damage to a committed
    /// change after a crash is refused, never cut off as if it were a torn write.
    #[test]
    fn damage_to_a_committed_change_is_refused_even_after_a_crash() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut log, image) = MetadataLog::open(tmp.path()).unwrap();
        let image = log.commit(&image, &topic("a", Uuid::new_v4())).unwrap();
        log.commit(&image, &topic("b", Uuid::new_v4())).unwrap();
        drop(log); // a crash: no close, no final checkpoint
        let seg = tmp
            .path()
            .join(format!("{METADATA_TOPIC}-0/00000000000000000000.log"));
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(MetadataLog::open(tmp.path()).is_err());
        assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing cut");
    }

    #[test]
    fn a_damaged_log_takes_only_its_partition_offline() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let mut records = topic("bad", Uuid::new_v4());
        records.extend(topic("good", Uuid::new_v4()));
        let image = commit(data, &records);
        close(host(data, &image));
        // The only batch of bad-0 now claims to run past the end of its file.
        let seg = data.join("bad-0/00000000000000000000.log");
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[8..12].copy_from_slice(&1_000_000i32.to_be_bytes());
        std::fs::write(&seg, &bytes).unwrap();

        let rm = ReplicaManager::new(0, data);
        rm.apply_image(&image, &RawConfig::defaults()).unwrap();
        rm.remove_orphans(&image);
        assert!(rm.get("good", 0).is_some());
        assert!(rm.get("bad", 0).is_none());
        let offline = rm.offline();
        assert_eq!(offline.len(), 1);
        assert!(offline[0].1.contains("at byte 0"), "{}", offline[0].1);
        assert_eq!(
            rm.missing_error("bad", 0),
            proto_kafka::ResponseError::KafkaStorageError
        );
        assert_eq!(std::fs::read(&seg).unwrap(), bytes, "kept as it is");
    }

    #[test]
    fn aside_names_are_kafkas() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my.topic-3");
        std::fs::create_dir(&dir).unwrap();
        let stray = rename_aside(&dir, STRAY_DIR_SUFFIX).unwrap();
        let name = stray.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_aside_name(name, STRAY_DIR_SUFFIX), Some("my.topic-3"));
        assert_eq!(parse_aside_name(name, DELETE_DIR_SUFFIX), None);
        assert_eq!(parse_aside_name("backups-delete", DELETE_DIR_SUFFIX), None);
        assert_eq!(parse_aside_name("t-0.abc-delete", DELETE_DIR_SUFFIX), None);
    }

    #[test]
    fn meta_properties_states() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            read_meta_properties(tmp.path()).unwrap(),
            MetaState::Missing
        );
        let meta = MetaProperties {
            cluster_id: "abc-_1".into(),
            node_id: 3,
        };
        write_meta_properties(tmp.path(), &meta).unwrap();
        assert_eq!(
            read_meta_properties(tmp.path()).unwrap(),
            MetaState::Valid(meta)
        );
        for garbage in [
            &b"garbage"[..],
            b"version=1\nnode.id=0\n",
            b"version=1\ncluster.id=x\nnode.id=-4\n",
            b"version=1\ncluster.id=a b\nnode.id=0\n",
            b"\xff\xfe\x00",
        ] {
            std::fs::write(meta_properties_path(tmp.path()), garbage).unwrap();
            assert!(matches!(
                read_meta_properties(tmp.path()).unwrap(),
                MetaState::Invalid(_)
            ));
        }
    }

    #[test]
    fn unknown_directories_become_strays_and_only_deleted_ids_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        let (kept, gone) = (Uuid::new_v4(), Uuid::new_v4());
        let mut records = topic("kept", kept);
        records.extend(topic("gone", gone));
        let image = commit(data, &records);
        close(host(data, &image));
        assert_eq!(
            partition_metadata::read(&data.join("kept-0")).unwrap(),
            Some(kept.into_bytes()),
            "partition.metadata records the topic id"
        );
        // A directory the metadata never mentioned, and the deletion of `gone` replayed.
        std::fs::create_dir(data.join("ghost-0")).unwrap();
        std::fs::write(data.join("ghost-0/00000000000000000000.log"), b"x").unwrap();
        let image = commit(data, &[MetadataRecord::RemoveTopic { topic_id: gone }]);
        let (_, image_again) = MetadataLog::open(data).unwrap();
        assert!(image_again.deleted_topic_ids.contains(&gone));

        let rm = ReplicaManager::new(0, data);
        rm.apply_image(&image, &RawConfig::defaults()).unwrap();
        rm.remove_orphans(&image);
        assert!(data.join("kept-0").is_dir());
        assert!(
            !data.join("gone-0").exists(),
            "a replayed delete removes its topic's data"
        );
        assert!(!data.join("ghost-0").exists());
        let strays: Vec<String> = std::fs::read_dir(data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(STRAY_DIR_SUFFIX))
            .collect();
        assert_eq!(strays.len(), 1, "{strays:?}");
        assert!(strays[0].starts_with("ghost-0."));
        assert_eq!(
            std::fs::read(data.join(&strays[0]).join("00000000000000000000.log")).unwrap(),
            b"x"
        );
    }

    #[test]
    fn recover_metadata_keeps_the_valid_prefix_and_rebuilds_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        write_meta_properties(
            data,
            &MetaProperties {
                cluster_id: "c1".into(),
                node_id: 0,
            },
        )
        .unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut records = topic("a", a);
        records.push(MetadataRecord::Config {
            resource_type: crate::metadata::records::RESOURCE_TOPIC,
            resource_name: "a".into(),
            name: "retention.ms".into(),
            value: Some("1234".into()),
        });
        commit(data, &records);
        let image = commit(data, &topic("b", b));
        close(host(data, &image));
        // Damage the last batch (topic b's records): the prefix (topic a, its config) is sound.
        let seg = data.join(format!("{METADATA_TOPIC}-0/00000000000000000000.log"));
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        std::fs::write(&seg, &bytes).unwrap();
        assert!(MetadataLog::open(data).is_err(), "the damage is refused");

        let report = recover_metadata(
            data,
            &RecoverOptions {
                cluster_id: None,
                node_id: 0,
            },
        )
        .unwrap();
        assert_eq!(report.salvaged_records, 3);
        assert!(report.salvage_stopped.is_some());
        assert_eq!(report.rebuilt_topics, vec![("b".to_string(), b, 1)]);
        assert_eq!(report.kept_aside.len(), 1);
        assert_eq!(
            std::fs::read(report.kept_aside[0].join("00000000000000000000.log")).unwrap(),
            bytes
        );
        assert!(report.wrote_meta_properties.is_none());
        let (_, image) = MetadataLog::open(data).unwrap();
        assert_eq!(image.topic("a").map(|t| t.id), Some(a));
        assert_eq!(image.topic("b").map(|t| t.id), Some(b));
        assert_eq!(
            image
                .topic_configs("a")
                .get("retention.ms")
                .map(String::as_str),
            Some("1234")
        );
        let epoch = image.topic("b").unwrap().partitions[&0].leader_epoch;
        assert!(
            epoch >= 1,
            "a new leader epoch above the batches' ({epoch})"
        );
    }
}
