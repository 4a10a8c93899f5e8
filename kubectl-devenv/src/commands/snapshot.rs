//! `kubectl devenv snapshot NAME [--class C]` and `restore NAME --from-snapshot SET --as NEW`:
//! VolumeSnapshots, where the cluster serves `snapshot.storage.k8s.io/v1` and has a CSI
//! snapshot driver. The objects are [`devenv_shared::build::snapshot`]'s; the webhook fills a
//! workspace's claims only from snapshots of its owner's claims, so restoring someone else's
//! set is refused by the API server with the reason.
//!
//! A snapshot is the storage's own copy, taken in an instant and kept in the storage system:
//! it survives a deleted claim, not a lost storage system. Backups (`backup`) go elsewhere.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::Api;

use devenv_shared::admission::access::owner_of;
use devenv_shared::build::snapshot::{
    fill_from, found_set, set_name, volume_snapshot, SnapshotOf, SET_LABEL,
};
use devenv_shared::build::workspace::{selector_string, validate_name, WorkspaceSpec};
use devenv_shared::model::snapshot::{
    VolumeSnapshot, VolumeSnapshotClass, DEFAULT_CLASS_ANNOTATION,
};

use crate::cli::{DryRun, GlobalArgs, RestoreArgs, SnapshotArgs};
use crate::client::{self, Cluster};
use crate::commands::backup::{claims_of, tier_of, workspace, workspace_image};
use crate::commands::effective_policy;
use crate::error::{ApiCall, Error};

/// Whether the cluster serves VolumeSnapshots; an error that names the capability if not.
async fn snapshots_served(cluster: &Cluster) -> Result<(), Error> {
    match cluster
        .client
        .list_api_group_resources("snapshot.storage.k8s.io/v1")
        .await
    {
        Ok(r) if r.resources.iter().any(|r| r.name == "volumesnapshots") => Ok(()),
        Ok(_) => Err(missing()),
        Err(e)
            if matches!(&e, kube::Error::Api(s) if s.code == 404)
                || e.to_string().contains("404") =>
        {
            Err(missing())
        }
        Err(e) => Err(cluster.err(ApiCall::new(
            "get",
            "snapshot.storage.k8s.io/v1",
            "API group",
        ))(e)),
    }
}

fn missing() -> Error {
    Error::Usage(
        "this cluster does not serve VolumeSnapshots (snapshot.storage.k8s.io/v1): install the CSI snapshot CRDs and controller and a driver that takes snapshots (kubectl devenv status says what this cluster offers), or back the workspace up to a registry: kubectl devenv backup NAME".into(),
    )
}

/// `--class`, else the class annotated as the cluster's default.
async fn class_to_use(cluster: &Cluster, flag: Option<&str>) -> Result<String, Error> {
    if let Some(class) = flag {
        return Ok(class.to_owned());
    }
    let api: Api<VolumeSnapshotClass> = Api::all(cluster.client.clone());
    let classes = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        // Classes are cluster-scoped: a namespace's user is seldom allowed to list them.
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(Error::Usage(
                "pass --class CLASS: your account may not list VolumeSnapshotClasses to find the cluster's default (an admin can say which class to use: kubectl get volumesnapshotclass)".into(),
            ))
        }
        Err(e) => {
            return Err(cluster.err(ApiCall::new(
                "list",
                "volumesnapshotclasses.snapshot.storage.k8s.io",
                "VolumeSnapshotClass",
            ))(e))
        }
    };
    let default: Vec<String> = classes
        .items
        .iter()
        .filter(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    match default.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::Usage(format!(
            "no default VolumeSnapshotClass ({DEFAULT_CLASS_ANNOTATION}=true); pass --class (the cluster has: {})",
            if classes.items.is_empty() {
                "none".to_owned()
            } else {
                classes
                    .items
                    .iter()
                    .filter_map(|c| c.metadata.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))),
        many => Err(Error::Usage(format!(
            "several default VolumeSnapshotClasses ({}); pass --class",
            many.join(", ")
        ))),
    }
}

/// `kubectl devenv snapshot NAME [--class C]`.
pub async fn run_snapshot(global: &GlobalArgs, args: &SnapshotArgs) -> Result<i32, Error> {
    validate_name(&args.name)?;
    let cluster = client::connect(global).await?;
    snapshots_served(&cluster).await?;
    let name = args.name.as_str();
    let sts = workspace(&cluster, name).await?;
    let copies = claims_of(&cluster, name, &sts, &[]).await?;
    if copies.is_empty() {
        return Err(Error::Usage(format!(
            "workspace {name} has no claims to snapshot yet (its pods have not started)"
        )));
    }
    let class = class_to_use(&cluster, args.class.as_deref()).await?;
    let image = workspace_image(&sts);
    let set = set_name(Timestamp::now());
    let ns = cluster.namespace.as_str();
    let api: Api<VolumeSnapshot> = Api::namespaced(cluster.client.clone(), ns);
    for (copy, claim) in &copies {
        let of = SnapshotOf {
            workspace: name.to_owned(),
            namespace: ns.to_owned(),
            claim: claim.clone(),
            volume: copy.volume.clone(),
            member: copy.member,
            claim_size: copy.claim_size.clone(),
            image: image.clone(),
            tier: tier_of(&sts),
            owner: owner_of(&sts.metadata).map(str::to_owned),
        };
        let snapshot = volume_snapshot(&of, &set, &class);
        let snapshot_name = snapshot.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &snapshot)
            .await
            .map_err(
                cluster.err(
                    ApiCall::new(
                        "create",
                        "volumesnapshots.snapshot.storage.k8s.io",
                        "VolumeSnapshot",
                    )
                    .ns(ns)
                    .name(&snapshot_name),
                ),
            )?;
        println!("volumesnapshot/{snapshot_name} created");
    }
    eprintln!(
        "snapshot set {set} of workspace {name} (class {class}); the CSI driver takes them: kubectl get volumesnapshot -n {ns} -l {SET_LABEL}={set}\n  restore with: kubectl devenv restore {name} --from-snapshot {set} --as NEW"
    );
    Ok(0)
}

/// `kubectl devenv restore NAME --from-snapshot SET --as NEW`.
pub async fn run_restore(global: &GlobalArgs, args: &RestoreArgs) -> Result<i32, Error> {
    validate_name(&args.name)?;
    let set = args.from_snapshot.as_deref().unwrap_or_default();
    let Some(new) = args.as_new.as_deref() else {
        return Err(Error::Usage(format!(
            "restore --from-snapshot makes a new workspace: pass --as NEW (e.g. kubectl devenv restore {0} --from-snapshot {set} --as {0}-restored); in place, restore a backup (restore {0} --from REF), which backs up what is there first",
            args.name
        )));
    };
    validate_name(new)?;
    if args.no_backup || args.backup_to.is_some() {
        return Err(Error::Usage(
            "--no-backup and --backup-to are for an in-place restore of a backup; --from-snapshot --as makes a new workspace and overwrites nothing".into(),
        ));
    }
    let cluster = client::connect(global).await?;
    snapshots_served(&cluster).await?;
    let ns = cluster.namespace.clone();
    let api: Api<VolumeSnapshot> = Api::namespaced(cluster.client.clone(), &ns);
    let selector = format!("{},{SET_LABEL}={set}", selector_string(&args.name));
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(
            cluster.err(
                ApiCall::new(
                    "list",
                    "volumesnapshots.snapshot.storage.k8s.io",
                    "VolumeSnapshot",
                )
                .ns(&ns),
            ),
        )?;
    let found = found_set(&listed.items, &args.name, set).map_err(Error::Usage)?;
    let Some(mut found) = found else {
        return Err(Error::NotFound {
            kind: "snapshot set".into(),
            name: set.to_owned(),
            where_: format!("workspace {} of namespace {ns:?}", args.name),
            hint: format!(
                "list the sets with: kubectl get volumesnapshot -n {ns} -l {} -L {SET_LABEL}",
                selector_string(&args.name)
            ),
        });
    };
    for s in &listed.items {
        let status = s.status.as_ref();
        if let Some(message) = status
            .and_then(|st| st.error.as_ref())
            .and_then(|e| e.message.as_deref())
        {
            return Err(Error::Usage(format!(
                "snapshot {} failed: {message}; take another (kubectl devenv snapshot {})",
                s.metadata.name.as_deref().unwrap_or_default(),
                args.name
            )));
        }
        if status.and_then(|st| st.ready_to_use) != Some(true) {
            eprintln!(
                "note: snapshot {} is not ready to use yet; its claim waits for it",
                s.metadata.name.as_deref().unwrap_or_default()
            );
        }
    }
    // The workspace's own image and tier when it still exists (what its owner runs now),
    // else what the snapshots' annotations say; said either way.
    let sts_api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), &ns);
    if let Some(sts) = sts_api.get_opt(&args.name).await.ok().flatten() {
        if crate::commands::check_is_workspace(&sts, &ns, &args.name).is_ok() {
            let image = workspace_image(&sts);
            if !image.is_empty() {
                found.image = image;
            }
            found.tier = tier_of(&sts).or(found.tier);
        }
    }
    eprintln!(
        "restoring set {set} of workspace {} into {new} with image {}",
        args.name, found.image
    );
    let policy = effective_policy(Some(&cluster), &global.install_namespace, None).await?;
    let mut spec = WorkspaceSpec::new(new, &ns, &found.image);
    spec.tier = found.tier.clone();
    for (volume, (_, size)) in &found.volumes {
        if let Some(size) = size {
            spec.volume_sizes.insert(volume.clone(), size.clone());
        }
    }
    let mut objects = crate::commands::create::build_checked(&spec, &policy)?;
    let filled = fill_from(&mut objects.stateful_set, &found);
    crate::commands::create::apply_objects(&cluster, &objects, DryRun::None).await?;
    println!("workspace/{new} created");
    eprintln!(
        "its claims are filled from snapshot set {set} of workspace {} ({}) by the CSI driver; watch it with: kubectl devenv get {new}",
        args.name,
        filled.join(", ")
    );
    Ok(0)
}
