//! `kubectl devenv backup NAME`, `backups [NAME]`, `restore NAME --from REF [--as NEW]`.
//!
//! A volume is read and written through `pods/exec` with the user's own rights: in the
//! running workspace pod (as the workspace user), or, for a pool member that is not running,
//! in a short-lived helper pod that mounts its claims ([`backup::helper_pod`]). Bytes go from
//! the pod's `tar` to a temporary file (hashed on the way: a blob's digest must be known
//! before its upload ends) and from there to the registry, a chunk at a time; a restore
//! downloads and checks every layer before it writes anything.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use oci_client::Reference;

use devenv_shared::admission::access::{owner_of, restore_rule, Requester};
use devenv_shared::build::backup::{
    self, archive_command, check_archive, config_blob, default_tag, extract_command,
    helper_mount_path, mounted_volumes, parse_manifest, Backup, BackupError, BackupInfo, Blob,
    Reason, VolumeCopy,
};
use devenv_shared::build::workspace::{selector_string, validate_name, WorkspaceSpec};
use devenv_shared::lifecycle::schedule;
use devenv_shared::model::keys::{FIELD_MANAGER, TIER_ANNOTATION, WORKSPACE_CONTAINER};
use devenv_shared::model::names::statefulset_claim_name;
use devenv_shared::model::policy::Policy;
use devenv_shared::model::time::format_time;

use crate::cli::{
    BackupArgs, BackupsArgs, GlobalArgs, ListFormat, ObjectFormat, RegistryArgs, RestoreArgs,
};
use crate::client::{self, Cluster};
use crate::commands::effective_policy;
use crate::error::{ApiCall, Error};
use crate::registry::{self, Registry, Target};
use crate::views::backups::{self as view, Listed};

/// The largest config blob read: a backup's is a few hundred bytes.
const CONFIG_LIMIT: u64 = 64 * 1024;
/// How long a helper pod may take to start.
const HELPER_START: Duration = Duration::from_secs(180);

/// Where one volume copy is, for reading or writing it.
struct Place {
    copy: VolumeCopy,
    claim: String,
    pod: String,
    container: String,
    path: String,
}

/// The places of a set of copies, and the helper pod made for those not running.
struct Opened {
    places: Vec<Place>,
    helper: Option<String>,
}

fn sts_call(ns: &str, name: &str) -> ApiCall {
    ApiCall::new("get", "statefulsets.apps", "workspace")
        .ns(ns)
        .name(name)
}

pub(crate) async fn workspace(cluster: &Cluster, name: &str) -> Result<StatefulSet, Error> {
    let ns = cluster.namespace.as_str();
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), ns);
    let sts = crate::commands::get_opt(cluster, &api, name, sts_call(ns, name))
        .await?
        .ok_or_else(|| Error::NotFound {
            kind: "workspace".into(),
            name: name.to_owned(),
            where_: format!("namespace {ns:?}"),
            hint: "list workspaces with: kubectl devenv list (-A for all namespaces)".into(),
        })?;
    crate::commands::check_is_workspace(&sts, ns, name)?;
    Ok(sts)
}

/// `(copy, claim)` for every claim of workspace `name` (its StatefulSet is `sts`), kept
/// claims of scaled-down members included; only `only` volumes when it is not empty.
pub(crate) async fn claims_of(
    cluster: &Cluster,
    name: &str,
    sts: &StatefulSet,
    only: &[String],
) -> Result<Vec<(VolumeCopy, String)>, Error> {
    let ns = cluster.namespace.as_str();
    let volumes = mounted_volumes(sts);
    for v in only {
        if !volumes.iter().any(|(n, _)| n == v) {
            return Err(Error::Usage(format!(
                "--volume {v:?}: workspace {name} has no such volume (its volumes: {})",
                volumes
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), ns);
    let claims =
        api.list(&ListParams::default().labels(&selector_string(name)))
            .await
            .map_err(cluster.err(
                ApiCall::new("list", "persistentvolumeclaims", "PersistentVolumeClaim").ns(ns),
            ))?;
    let mut out = Vec::new();
    for claim in claims.items {
        let Some(claim_name) = claim.metadata.name.clone() else {
            continue;
        };
        let size = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone());
        for (volume, path) in &volumes {
            if !only.is_empty() && !only.contains(volume) {
                continue;
            }
            let prefix = format!("{volume}-{name}-");
            let member = claim_name
                .strip_prefix(&prefix)
                .and_then(|m| m.parse::<u64>().ok())
                .filter(|m| statefulset_claim_name(volume, name, *m) == claim_name);
            if let Some(member) = member {
                out.push((
                    VolumeCopy {
                        volume: volume.clone(),
                        member,
                        mount_path: path.clone(),
                        claim_size: size.clone(),
                    },
                    claim_name.clone(),
                ));
            }
        }
    }
    out.sort_by(|a, b| (a.0.member, &a.0.volume).cmp(&(b.0.member, &b.0.volume)));
    Ok(out)
}

/// Whether pod `name` is a member of StatefulSet `sts_uid` (its controller, by uid: a pod
/// of that name made by anyone else would be read, or written to, in the workspace's
/// place) that can take an exec in its workspace container now.
async fn running_member(
    cluster: &Cluster,
    pod: &str,
    sts_uid: Option<&str>,
) -> Result<bool, Error> {
    let ns = cluster.namespace.as_str();
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let p = crate::commands::get_opt(
        cluster,
        &api,
        pod,
        ApiCall::new("get", "pods", "Pod").ns(ns),
    )
    .await?;
    let member_of_sts = |p: &Pod| {
        p.metadata.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true)
                && o.kind == "StatefulSet"
                && sts_uid.is_some_and(|uid| o.uid == uid)
        })
    };
    Ok(p.is_some_and(|p| {
        p.metadata.deletion_timestamp.is_none()
            && member_of_sts(&p)
            && crate::pod_status::exec_refusal(&p, WORKSPACE_CONTAINER).is_none()
    }))
}

/// The image of the workspace container of `sts` (a helper pod runs it: its `tar`).
pub(crate) fn workspace_image(sts: &StatefulSet) -> String {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == WORKSPACE_CONTAINER))
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// The tier a workspace was made with (`devenv.io/tier`), when recorded.
pub(crate) fn tier_of(sts: &StatefulSet) -> Option<String> {
    sts.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TIER_ANNOTATION))
        .cloned()
}

/// Finds where each copy can be read or written: its running member pod, else a helper pod
/// (one for all the members that are not running) that mounts the claims.
async fn open(
    cluster: &Cluster,
    sts: &StatefulSet,
    policy: &Policy,
    copies: Vec<(VolumeCopy, String)>,
    read_only: bool,
) -> Result<Opened, Error> {
    let workspace = sts.metadata.name.as_deref().unwrap_or_default();
    let image = workspace_image(sts);
    let image = image.as_str();
    let sts_uid = sts.metadata.uid.as_deref();
    let mut places = Vec::new();
    let mut stopped = Vec::new();
    for (copy, claim) in copies {
        let pod = format!("{workspace}-{}", copy.member);
        if running_member(cluster, &pod, sts_uid).await? {
            places.push(Place {
                path: copy.mount_path.clone(),
                copy,
                claim,
                pod,
                container: WORKSPACE_CONTAINER.to_owned(),
            });
        } else {
            stopped.push((copy, claim));
        }
    }
    if stopped.is_empty() {
        return Ok(Opened {
            places,
            helper: None,
        });
    }
    let ns = cluster.namespace.as_str();
    let suffix = format!("{:x}", Timestamp::now().as_nanosecond() & 0xff_ffff);
    let name = format!("{workspace}-volumes-{suffix}");
    let claims: Vec<_> = stopped
        .iter()
        .map(|(c, claim)| (c.member, c.volume.clone(), claim.clone()))
        .collect();
    let pod = backup::helper_pod(&name, workspace, image, &policy.user, &claims, read_only);
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    eprintln!(
        "{} of workspace {workspace} not running: reading its volumes through pod {name}",
        if stopped.len() == 1 {
            "a member"
        } else {
            "members"
        }
    );
    api.create(&PostParams::default(), &pod)
        .await
        .map_err(cluster.err(ApiCall::new("create", "pods", "Pod").ns(ns).name(&name)))?;
    let opened = Opened {
        places: stopped
            .into_iter()
            .map(|(copy, claim)| Place {
                path: helper_mount_path(copy.member, &copy.volume),
                copy,
                claim,
                pod: name.clone(),
                container: "volumes".to_owned(),
            })
            .chain(places)
            .collect(),
        helper: Some(name.clone()),
    };
    let deadline = tokio::time::Instant::now() + HELPER_START;
    loop {
        let p = api
            .get_opt(&name)
            .await
            .map_err(cluster.err(ApiCall::new("get", "pods", "Pod").ns(ns).name(&name)))?;
        let why = match &p {
            None => Some(format!("pod {name} is gone")),
            Some(p) => crate::pod_status::exec_refusal(p, "volumes"),
        };
        let Some(why) = why else { break };
        if tokio::time::Instant::now() > deadline {
            close(cluster, &opened).await;
            return Err(Error::Timeout {
                after: format!("{}s", HELPER_START.as_secs()),
                what: format!("pod {name} to mount the volumes of workspace {workspace}"),
                reason: why,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(opened)
}

/// Deletes the helper pod, if one was made; a failure is said, not fatal (its deadline
/// stops it anyway).
async fn close(cluster: &Cluster, opened: &Opened) {
    if let Some(name) = &opened.helper {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
        if let Err(e) = api.delete(name, &DeleteParams::default()).await {
            eprintln!(
                "warning: could not delete pod {name} ({e}); it stops by itself within {}s",
                backup::HELPER_DEADLINE_SECONDS
            );
        }
    }
}

/// The repository backups of this command go to or come from: `flag`, else the policy's
/// `backup.repository`; an error that says how to give one otherwise.
pub fn repository(flag: Option<&str>, field: &str, policy: &Policy) -> Result<Target, Error> {
    match (flag, policy.backup.repository.as_deref()) {
        (Some(text), _) => registry::parse(text, field),
        (None, Some(text)) => registry::parse(text, "the policy's backup.repository"),
        (None, None) => Err(Error::Usage(format!(
            "no backup repository: pass {field} REGISTRY/REPO, or set backup.repository in the policy (kubectl devenv install --policy-file)"
        ))),
    }
}

/// The tagged reference a new backup is pushed to: `to` as given when it names a tag,
/// else `to`'s repository with [`default_tag`].
fn backup_reference(
    to: &Target,
    workspace: &str,
    reason: Reason,
    now: Timestamp,
) -> Result<Reference, Error> {
    if to.explicit {
        if to.reference.digest().is_some() {
            return Err(Error::Usage(format!(
                "{} names a digest; a backup is pushed under a tag (REGISTRY/REPO[:TAG])",
                to.reference.whole()
            )));
        }
        return Ok(to.reference.clone());
    }
    Ok(registry::tagged(
        &to.reference,
        &default_tag(workspace, reason, now),
    ))
}

/// Takes a backup of workspace `name` to `to`; returns the reference pushed (by digest).
pub async fn take(
    cluster: &Cluster,
    policy: &Policy,
    name: &str,
    to: &Target,
    registry_args: &RegistryArgs,
    reason: Reason,
    only: &[String],
) -> Result<Reference, Error> {
    let sts = workspace(cluster, name).await?;
    let now = Timestamp::now();
    let reference = backup_reference(to, name, reason, now)?;
    let copies = claims_of(cluster, name, &sts, only).await?;
    if copies.is_empty() {
        return Err(BackupError::NothingToBackUp {
            workspace: name.to_owned(),
        }
        .into());
    }
    let template = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let container =
        template.and_then(|p| p.containers.iter().find(|c| c.name == WORKSPACE_CONTAINER));
    let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
    let info = BackupInfo {
        workspace: name.to_owned(),
        namespace: cluster.namespace.clone(),
        owner: owner_of(&sts.metadata).map(str::to_owned),
        created: format_time(now),
        reason,
        image: image.clone(),
        tier: tier_of(&sts),
        keep_alive: container.is_some_and(|c| c.command.is_some()),
        replicas: copies
            .iter()
            .map(|(c, _)| c.member)
            .max()
            .map_or(1, |m| i32::try_from(m + 1).unwrap_or(i32::MAX)),
    };
    let registry = Registry::connect(&reference, registry_args)?;
    let opened = open(cluster, &sts, policy, copies, true).await?;
    let result = push_volumes(cluster, &registry, &reference, &info, &opened).await;
    close(cluster, &opened).await;
    let digest = result?;
    let pushed = registry::at_digest(&reference, &digest);
    record(cluster, name, now, &pushed).await;
    Ok(pushed)
}

/// Writes the good backup on the workspace ([`schedule::record_patch`]): `get` shows it and
/// the schedule counts from it. The backup is made whatever happens here, so a failure is
/// said, not returned.
async fn record(cluster: &Cluster, name: &str, taken: Timestamp, pushed: &Reference) {
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let patch = schedule::record_patch(taken, &pushed.whole());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    if let Err(e) = api.patch(name, &params, &Patch::Merge(&patch)).await {
        eprintln!(
            "warning: backed up, but could not record it on workspace {name} ({e}); `get` will not show it"
        );
    }
}

/// The devenv backups among the tags of `repository` that start with `prefix`, and how many
/// other tags there were.
async fn list_in(
    registry: &Registry,
    repository: &Reference,
    prefix: &str,
) -> Result<(Vec<Listed>, usize), Error> {
    let mut rows = Vec::new();
    let mut others = 0;
    for tag in registry.tags(repository).await? {
        if !tag.starts_with(prefix) {
            continue;
        }
        let reference = registry::tagged(repository, &tag);
        // A tag that cannot be read (an image index, a broken push) is not a backup: one
        // must not stop the listing, nor pruning after a good backup.
        let Ok((bytes, digest)) = registry.pull_manifest(&reference).await else {
            others += 1;
            continue;
        };
        match parse_manifest(&reference.whole(), &bytes) {
            Ok(backup) => rows.push(Listed {
                tag,
                digest,
                backup,
            }),
            Err(_) => others += 1,
        }
    }
    Ok((rows, others))
}

/// A scheduled backup of workspace `name` (the lifecycle controller's, on `backup.every`)
/// to the policy's repository, then pruning of its scheduled backups to `backup.keep`
/// ([`schedule::prune`]). Returns the backup and the tags deleted.
pub async fn scheduled(
    cluster: &Cluster,
    policy: &Policy,
    name: &str,
    registry_args: &RegistryArgs,
) -> Result<(Reference, Vec<String>), Error> {
    let to = repository(None, "backup.repository", policy)?;
    let pushed = take(
        cluster,
        policy,
        name,
        &to,
        registry_args,
        Reason::Scheduled,
        &[],
    )
    .await?;
    let registry = Registry::connect(&to.reference, registry_args)?;
    let (rows, _) = list_in(&registry, &to.reference, &format!("{name}-")).await?;
    let mine = view::select(rows, Some(&cluster.namespace), Some(name));
    // A manifest says when it was taken; one from the future (a forged one, or a clock far
    // ahead) would count as the newest and push real backups out: it is left out, neither
    // kept nor deleted. (Whoever can push to the repository can forge backups at all: give
    // tenants repositories, or credentials, of their own.)
    let horizon = format_time(
        Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_mins(5))
            .unwrap_or(Timestamp::MAX),
    );
    let stored: Vec<schedule::Stored> = mine
        .iter()
        .filter(|r| r.backup.info.created <= horizon)
        .map(|r| schedule::Stored {
            tag: r.tag.clone(),
            digest: r.digest.clone(),
            created: r.backup.info.created.clone(),
            reason: r.backup.info.reason,
        })
        .collect();
    let mut pruned = Vec::new();
    for doomed in schedule::prune(&stored, policy.backup.keep()) {
        if Some(doomed.digest.as_str()) == pushed.digest() {
            continue;
        }
        registry
            .delete(&registry::at_digest(&to.reference, &doomed.digest))
            .await?;
        pruned.push(doomed.tag.clone());
    }
    Ok((pushed, pruned))
}

async fn push_volumes(
    cluster: &Cluster,
    registry: &Registry,
    reference: &Reference,
    info: &BackupInfo,
    opened: &Opened,
) -> Result<String, Error> {
    let spool = tempfile::Builder::new()
        .prefix("devenv-backup-")
        .tempdir()
        .map_err(|e| Error::Usage(format!("cannot make a temporary directory: {e}")))?;
    let mut layers = Vec::new();
    let mut places: Vec<&Place> = opened.places.iter().collect();
    places.sort_by(|a, b| (a.copy.member, &a.copy.volume).cmp(&(b.copy.member, &b.copy.volume)));
    for place in places {
        let file = spool
            .path()
            .join(format!("{}-{}.tar", place.copy.volume, place.copy.member));
        let started = std::time::Instant::now();
        let streamed = crate::exec::stream(
            cluster.client.clone(),
            &cluster.namespace,
            &place.pod,
            &place.container,
            archive_command(&place.path),
            None,
            Some(&file),
        )
        .await
        .map_err(|e| Error::Other(e.context(format!("reading claim {}", place.claim))))?;
        let checked = match (streamed.code, streamed.stdout) {
            (0, Some(blob)) => check_archive(&streamed.stderr, &blob).map(|()| blob),
            (code, _) => Err(format!("exited with {code}: {}", streamed.stderr.trim())),
        };
        let blob = checked.map_err(|why| {
            Error::Other(anyhow::anyhow!(
                "reading claim {} ({} in pod {}) failed: {why}",
                place.claim,
                place.path,
                place.pod
            ))
        })?;
        let read = started.elapsed();
        registry.push_file(reference, &file, &blob).await?;
        let _ = std::fs::remove_file(&file);
        eprintln!(
            "  {} (member {}): {} ({} bytes), read in {:.1}s, pushed in {:.1}s",
            place.copy.volume,
            place.copy.member,
            crate::views::list::format_bytes(blob.size as f64),
            blob.size,
            read.as_secs_f64(),
            (started.elapsed() - read).as_secs_f64()
        );
        layers.push((place.copy.clone(), blob));
    }
    let config = registry.push_bytes(reference, config_blob(info)).await?;
    let manifest = backup::manifest(info, &config, &layers);
    registry.push_manifest(reference, manifest).await
}

/// `kubectl devenv backup NAME [--to REF] [--volume V]`.
pub async fn run_backup(global: &GlobalArgs, args: &BackupArgs) -> Result<i32, Error> {
    validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
    let to = repository(args.to.as_deref(), "--to", &policy)?;
    eprintln!("backing up workspace {}:", args.name);
    let pushed = take(
        &cluster,
        &policy,
        &args.name,
        &to,
        &args.registry,
        Reason::Manual,
        &args.volumes,
    )
    .await?;
    println!("{}", pushed.whole());
    Ok(0)
}

/// A backup read from the registry: the manifest (digest checked), with what the config
/// blob adds.
async fn read_backup(
    registry: &Registry,
    reference: &Reference,
) -> Result<(Backup, String), Error> {
    let (bytes, digest) = registry.pull_manifest(reference).await?;
    let mut found = parse_manifest(&reference.whole(), &bytes)?;
    let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let blob = Blob {
        digest: config["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        size: config["config"]["size"].as_u64().unwrap_or_default(),
    };
    if !backup::is_sha256_digest(&blob.digest) {
        return Err(BackupError::NotABackup {
            reference: reference.whole(),
            reason: "its config digest is not a sha256 digest".into(),
        }
        .into());
    }
    let text = registry.pull_small(reference, &blob, CONFIG_LIMIT).await?;
    let info: BackupInfo = serde_json::from_slice(&text).map_err(|e| BackupError::NotABackup {
        reference: reference.whole(),
        reason: format!("its config is not a devenv backup config ({e})"),
    })?;
    // The annotations are what `backups` lists; the config must say the same.
    if info.workspace != found.info.workspace || info.owner != found.info.owner {
        return Err(BackupError::NotABackup {
            reference: reference.whole(),
            reason: "its config and its annotations name different workspaces or owners".into(),
        }
        .into());
    }
    found.info.image = info.image;
    found.info.tier = info.tier;
    found.info.keep_alive = info.keep_alive;
    Ok((found, digest))
}

/// `kubectl devenv backups [NAME] [-A]`.
pub async fn run_backups(global: &GlobalArgs, args: &BackupsArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
    let from = repository(args.from.as_deref(), "--from", &policy)?;
    let registry = Registry::connect(&from.reference, &args.registry)?;
    let (rows, others) = list_in(&registry, &from.reference, "").await?;
    let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    let rows = view::select(rows, namespace, args.name.as_deref());
    if others > 0 {
        eprintln!(
            "({others} tag(s) of {} are not devenv backups)",
            from.reference.whole()
        );
    }
    match args.output {
        None | Some(ListFormat::Wide) => {
            if rows.is_empty() {
                eprintln!("No backups found in {}.", from.reference.whole());
            } else {
                print!("{}", view::table(&rows, args.all_namespaces));
            }
        }
        Some(ListFormat::Name) => {
            for r in &rows {
                println!("{}", registry::tagged(&from.reference, &r.tag).whole());
            }
        }
        Some(f @ (ListFormat::Json | ListFormat::Yaml)) => {
            let format = if f == ListFormat::Json {
                ObjectFormat::Json
            } else {
                ObjectFormat::Yaml
            };
            crate::output::print(
                &[serde_json::json!({ "items": view::values(&rows) })],
                format,
            )?;
        }
    }
    Ok(0)
}

/// Who runs this command, as the policy sees them (the API server says who: a
/// SelfSubjectReview, as `kubectl auth whoami`).
async fn requester(cluster: &Cluster, policy: &Policy) -> Result<Requester, Error> {
    let api: Api<SelfSubjectReview> = Api::all(cluster.client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(cluster.err(ApiCall::new(
            "create",
            "selfsubjectreviews.authentication.k8s.io",
            "SelfSubjectReview",
        )))?;
    let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok(Requester::of(&policy.access, &info))
}

/// `kubectl devenv restore NAME --from REF [--as NEW] [--no-backup]`.
pub async fn run_restore(global: &GlobalArgs, args: &RestoreArgs) -> Result<i32, Error> {
    validate_name(&args.name)?;
    if let Some(new) = &args.as_new {
        validate_name(new)?;
        if args.no_backup || args.backup_to.is_some() {
            return Err(Error::Usage(
                "--no-backup and --backup-to are for an in-place restore; --as makes a new workspace and overwrites nothing".into(),
            ));
        }
    }
    let from_text = args.from.as_deref().unwrap_or_default();
    let from = registry::parse(from_text, "--from")?;
    if !from.explicit {
        return Err(Error::Usage(format!(
            "--from {from_text:?} names no backup: add its tag or digest (list them with: kubectl devenv backups {})",
            args.name
        )));
    }
    let cluster = client::connect(global).await?;
    let ns = cluster.namespace.clone();
    let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
    // 1. Where it goes (checked before the registry is asked anything), what the backup
    // is, and whether this user may restore it there.
    let target = args.as_new.clone().unwrap_or_else(|| args.name.clone());
    let sts_api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &ns);
    let existing =
        crate::commands::get_opt(&cluster, &sts_api, &target, sts_call(&ns, &target)).await?;
    if let (None, Some(sts)) = (&args.as_new, &existing) {
        // In place overwrites every volume: never an application's StatefulSet's.
        crate::commands::check_is_workspace(sts, &ns, &target)?;
    }
    if args.as_new.is_some() && existing.is_some() {
        return Err(Error::AlreadyExists {
            kind: "workspace".into(),
            name: target,
            namespace: ns,
        });
    }
    if args.as_new.is_none() && existing.is_none() {
        return Err(Error::NotFound {
            kind: "workspace".into(),
            name: target.clone(),
            where_: format!("namespace {ns:?}"),
            hint: format!(
                "to restore into a new workspace, pass --as NEW (e.g. kubectl devenv restore {} --from {} --as {})",
                args.name, from_text, args.name
            ),
        });
    }
    let registry = Registry::connect(&from.reference, &args.registry)?;
    let (found, digest) = read_backup(&registry, &from.reference).await?;
    let pinned = registry::at_digest(&from.reference, &digest);
    let me = requester(&cluster, &policy).await?;
    let target_owner = existing
        .as_ref()
        .map(|s| owner_of(&s.metadata).map(str::to_owned));
    restore_rule(
        &me,
        &found.info.workspace,
        found.info.owner.as_deref(),
        &target,
        target_owner.as_ref().map(|o| o.as_deref()),
    )
    .map_err(Error::RestoreRefused)?;

    // 2. Every byte, checked against its digest, before anything is written.
    let spool = tempfile::Builder::new()
        .prefix("devenv-restore-")
        .tempdir()
        .map_err(|e| Error::Usage(format!("cannot make a temporary directory: {e}")))?;
    let mut files = Vec::new();
    for (i, (copy, blob)) in found.layers.iter().enumerate() {
        let file = spool.path().join(format!("layer-{i}.tar"));
        registry.pull_to_file(&pinned, blob, &file).await?;
        files.push((copy.clone(), file));
    }
    eprintln!(
        "backup {} verified: {} layer(s), {}",
        pinned.whole(),
        files.len(),
        crate::views::list::format_bytes(found.size as f64)
    );

    // 3. In place: what is there now is backed up first. --as: the workspace is made.
    let sts = match existing {
        Some(sts) => {
            if args.no_backup {
                eprintln!(
                    "--no-backup: what workspace {target} holds now is overwritten without a backup"
                );
            } else {
                let to = match &args.backup_to {
                    Some(text) => registry::parse(text, "--backup-to")?,
                    None => Target {
                        reference: registry::tagged(&from.reference, "unused"),
                        explicit: false,
                    },
                };
                eprintln!("backing up workspace {target} before the restore:");
                let before = take(
                    &cluster,
                    &policy,
                    &target,
                    &to,
                    &args.registry,
                    Reason::PreRestore,
                    &[],
                )
                .await?;
                eprintln!("what {target} held is in {}", before.whole());
            }
            sts
        }
        None => create_like(&cluster, &policy, &target, &found, args.timeout).await?,
    };

    // 4. Each layer into its volume.
    let mut copies = Vec::new();
    let claims = claims_of(&cluster, &target, &sts, &[]).await?;
    for (copy, file) in &files {
        let Some((have, claim)) = claims
            .iter()
            .find(|(c, _)| c.volume == copy.volume && c.member == copy.member)
        else {
            return Err(Error::Usage(format!(
                "workspace {target} has no claim for volume {} of member {} (the backup has it); scale it to {} replicas first (kubectl devenv scale {target} --replicas {}), then restore again",
                copy.volume,
                copy.member,
                copy.member + 1,
                copy.member + 1
            )));
        };
        copies.push(((have.clone(), claim.clone()), file.clone()));
    }
    let opened = open(
        &cluster,
        &sts,
        &policy,
        copies.iter().map(|(c, _)| c.clone()).collect(),
        false,
    )
    .await?;
    let result = write_volumes(&cluster, &opened, &copies).await;
    close(&cluster, &opened).await;
    result?;
    println!("workspace/{target} restored from {}", pinned.whole());
    Ok(0)
}

async fn write_volumes(
    cluster: &Cluster,
    opened: &Opened,
    copies: &[((VolumeCopy, String), std::path::PathBuf)],
) -> Result<(), Error> {
    for ((copy, claim), file) in copies {
        let Some(place) = opened.places.iter().find(|p| &p.claim == claim) else {
            continue;
        };
        let streamed = crate::exec::stream(
            cluster.client.clone(),
            &cluster.namespace,
            &place.pod,
            &place.container,
            extract_command(&place.path),
            Some(file),
            None,
        )
        .await
        .map_err(|e| Error::Other(e.context(format!("writing claim {claim}"))))?;
        if streamed.code != 0 {
            return Err(Error::Other(anyhow::anyhow!(
                "writing claim {claim} ({} in pod {}) failed: exited with {}: {}",
                place.path,
                place.pod,
                streamed.code,
                streamed.stderr.trim()
            )));
        }
        eprintln!("  {} (member {}) restored", copy.volume, copy.member);
    }
    Ok(())
}

/// Makes workspace `name` like the one `found` was taken of (image, tier, pool size, claim
/// sizes) and waits until it is ready.
async fn create_like(
    cluster: &Cluster,
    policy: &Policy,
    name: &str,
    found: &Backup,
    timeout: Duration,
) -> Result<StatefulSet, Error> {
    let mut spec = WorkspaceSpec::new(name, &cluster.namespace, &found.info.image);
    spec.tier = found.info.tier.clone();
    spec.replicas = found.info.replicas;
    spec.keep_alive = found.info.keep_alive;
    for (copy, _) in &found.layers {
        if let Some(size) = &copy.claim_size {
            spec.volume_sizes
                .entry(copy.volume.clone())
                .or_insert_with(|| size.clone());
        }
    }
    let objects = crate::commands::create::build_checked(&spec, policy)?;
    crate::commands::create::apply_objects(cluster, &objects, crate::cli::DryRun::None).await?;
    println!("workspace/{name} created");
    eprintln!(
        "waiting for workspace {name} (timeout {}s):",
        timeout.as_secs()
    );
    crate::wait::until_ready(cluster, name, spec.replicas, timeout).await?;
    workspace(cluster, name).await
}
