//! `kubectl devenv ui`: the portal. A web page served by the plugin on 127.0.0.1, acting
//! with the user's own kubeconfig exactly as the other commands do; no server in the
//! cluster, no new identity.
//!
//! The page is sent the workspaces table ([`crate::views::list::join`], the rows of
//! `list -o json`) each time a watch of StatefulSets, pods or claims sees a change, over
//! server-sent events: no polling, no reload. Its actions go through the commands' own
//! code ([`scale::stop_or_start_in`]), so the same checks and messages apply. Who may use it
//! is [`Gate`]'s decision (Host, Origin, this run's token); the page's assets are compiled
//! into the binary (`src/ui/`), nothing is fetched at run time.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use devenv_shared::model::keys::WORKSPACE_LABEL;
use devenv_shared::model::lifecycle_policy::LifecyclePolicy;
use devenv_shared::model::policy::Policy;

use crate::cli::{GlobalArgs, UiArgs};
use crate::client::{self, Cluster};
use crate::commands::{effective_policy, scale};
use crate::error::Error;
use crate::views::list::join;
use crate::views::portal::{
    create_argv, purge_argv, quota_rows, tier_choices, token_from, usage_by_workspace, vscode_link,
    workspace_events, Action, CreateForm, Gate, PurgeForm, ScaleForm, Snapshot, TierChoice, Usage,
    TOKEN_BYTES, TOKEN_HEADER,
};

const INDEX_HTML: &str = include_str!("../ui/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
/// The page's assets: (path, content type, body).
const ASSETS: [(&str, &str, &str); 5] = [
    ("/app.js", JS, APP_JS),
    ("/view.js", JS, VIEW_JS),
    ("/app.css", CSS, APP_CSS),
    ("/xterm.js", JS, XTERM_JS),
    ("/xterm.css", CSS, XTERM_CSS),
];
const APP_JS: &str = include_str!("../ui/app.js");
const VIEW_JS: &str = include_str!("../ui/view.js");
const APP_CSS: &str = include_str!("../ui/app.css");
// xterm.js, from the npm registry at the version of `kubectl-devenv/ui/package-lock.json`;
// `kubectl-devenv/ui/check.sh` (tests/run.sh) checks these copies match a fresh `npm ci`.
const XTERM_JS: &str = include_str!("../ui/vendor/xterm.js");
const XTERM_CSS: &str = include_str!("../ui/vendor/xterm.css");

/// Changes that arrive together (a stop touches the StatefulSet, then its pod, several
/// times) are sent as one snapshot after this pause.
const COALESCE: Duration = Duration::from_millis(150);
/// A snapshot is sent at least this often, without any change: the page's ages and
/// "stops in" are relative to now.
const REFRESH: Duration = Duration::from_secs(30);

/// What the watches have seen, for the page: the three mirrors and how each is doing.
struct Mirrors {
    statefulsets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    health: Arc<Mutex<[WatchHealth; 3]>>,
    /// What the metrics API last said each workspace uses ([`refresh_usage`]).
    usage: Arc<Mutex<BTreeMap<String, Usage>>>,
    /// Bumped on every change any watch sees; the event streams wait on it.
    changes: watch::Receiver<u64>,
    _changes_sender: Arc<watch::Sender<u64>>,
}

#[derive(Default, Clone)]
struct WatchHealth {
    synced: bool,
    error: Option<String>,
}

/// One run of the portal: what it shows, to whom, and with which credentials.
pub struct Portal {
    cluster: Cluster,
    /// The namespace shown; `None` with -A.
    scope: Option<String>,
    /// The installed policy (lifecycle and backup times); `None` when it could not be read.
    policy: Option<Policy>,
    /// The installed policy's tiers, for the create form.
    tiers: Vec<TierChoice>,
    /// Where the webhook and its policy are installed (`--install-namespace`).
    install_namespace: String,
    /// The flags the portal was started with (kubeconfig, context), for the commands it
    /// runs whole (`delete --purge`).
    global: GlobalArgs,
    gate: Gate,
    token: String,
    mirrors: Mirrors,
}

/// Mirrors `api` (the objects the workspace label marks, without managedFields) in a
/// store, bumping `changes` on every event and keeping `health[slot]` current.
fn mirror<K>(
    what: &'static str,
    api: Api<K>,
    slot: usize,
    health: Arc<Mutex<[WatchHealth; 3]>>,
    changes: Arc<watch::Sender<u64>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let selector = devenv_shared::build::workspace::all_workspaces_selector();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .modify(|o| o.managed_fields_mut().clear()),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let bump = {
                let mut health = health.lock().unwrap_or_else(PoisonError::into_inner);
                let h = &mut health[slot];
                match event {
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
                    Ok(watcher::Event::InitDone) => {
                        h.synced = true;
                        h.error = None;
                        true
                    }
                    Ok(_) => {
                        h.error = None;
                        true
                    }
                    Err(e) => {
                        tracing::warn!("watching {what}: {e}");
                        h.error = Some(format!("watching {what}: {e}"));
                        true
                    }
                }
            };
            if bump {
                changes.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    });
    reader
}

impl Mirrors {
    fn start(cluster: &Cluster, scope: Option<&str>) -> Mirrors {
        fn api<K>(cluster: &Cluster, scope: Option<&str>) -> Api<K>
        where
            K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
            K::DynamicType: Default,
        {
            match scope {
                Some(ns) => Api::namespaced(cluster.client.clone(), ns),
                None => Api::all(cluster.client.clone()),
            }
        }
        let health = Arc::new(Mutex::new(<[WatchHealth; 3]>::default()));
        let (sender, changes) = watch::channel(0u64);
        let sender = Arc::new(sender);
        let usage = Arc::new(Mutex::new(BTreeMap::new()));
        tokio::spawn(refresh_usage(
            cluster.client.clone(),
            scope.map(str::to_owned),
            usage.clone(),
            sender.clone(),
        ));
        Mirrors {
            usage,
            statefulsets: mirror(
                "statefulsets",
                api(cluster, scope),
                0,
                health.clone(),
                sender.clone(),
            ),
            pods: mirror(
                "pods",
                api(cluster, scope),
                1,
                health.clone(),
                sender.clone(),
            ),
            claims: mirror(
                "persistentvolumeclaims",
                api(cluster, scope),
                2,
                health.clone(),
                sender.clone(),
            ),
            health,
            changes,
            _changes_sender: sender,
        }
    }
}

/// How often the metrics API is asked: its own resolution (metrics-server scrapes every
/// 15 s). Usage cannot be watched; the page still never polls, it is sent what changed.
const USAGE_EVERY: Duration = Duration::from_secs(15);
/// How long to wait before asking again a cluster that does not serve the metrics API.
const USAGE_ABSENT_RETRY: Duration = Duration::from_secs(300);

/// Keeps `usage` current from `metrics.k8s.io` (workspace pods in `scope`), bumping
/// `changes` when it changed. Where the API is not served the columns stay empty.
async fn refresh_usage(
    client: kube::Client,
    scope: Option<String>,
    usage: Arc<Mutex<BTreeMap<String, Usage>>>,
    changes: Arc<watch::Sender<u64>>,
) {
    let selector = devenv_shared::build::workspace::all_workspaces_selector();
    let path = match &scope {
        Some(ns) => format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"),
        None => "/apis/metrics.k8s.io/v1beta1/pods".to_owned(),
    };
    let url = format!("{path}?labelSelector={}", selector.replace('/', "%2F"));
    loop {
        let wait = match http::Request::get(&url).body(Vec::new()) {
            Ok(request) => match client.request::<serde_json::Value>(request).await {
                Ok(list) => {
                    let now = usage_by_workspace(&list);
                    let mut held = usage.lock().unwrap_or_else(PoisonError::into_inner);
                    if *held != now {
                        *held = now;
                        changes.send_modify(|v| *v = v.wrapping_add(1));
                    }
                    USAGE_EVERY
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 503 => {
                    tracing::debug!(
                        "the metrics API is not served ({}); CPU and memory in use unknown",
                        s.message
                    );
                    USAGE_ABSENT_RETRY
                }
                Err(e) => {
                    tracing::debug!("reading the metrics API: {e}");
                    USAGE_EVERY
                }
            },
            Err(e) => {
                tracing::warn!("the metrics request: {e}");
                return;
            }
        };
        tokio::time::sleep(wait).await;
    }
}

fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| K::clone(o)).collect()
}

impl Portal {
    /// The page's document: every workspace as `list -o json` shows it, now.
    fn snapshot(&self) -> String {
        let rows = join(
            &owned(&self.mirrors.statefulsets),
            &owned(&self.mirrors.pods),
            &owned(&self.mirrors.claims),
            &[],
            self.policy.as_ref(),
            Timestamp::now(),
        );
        let health = self
            .mirrors
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let usage = self
            .mirrors
            .usage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let snapshot = Snapshot {
            namespace: self.scope.as_deref(),
            synced: health.iter().all(|h| h.synced),
            workspaces: &rows,
            tiers: &self.tiers,
            usage: &usage,
            errors: health.iter().filter_map(|h| h.error.clone()).collect(),
        };
        serde_json::to_string(&snapshot).unwrap_or_else(|e| {
            json!({ "errors": [format!("cannot encode the table: {e}")] }).to_string()
        })
    }
}

/// The portal's routes, behind its gate. Every response, refusals included, carries the
/// headers of [`harden`].
pub fn router(portal: Arc<Portal>) -> Router {
    let mut router = Router::new()
        .route("/", get(index))
        .route("/api/workspaces", get(workspaces))
        .route("/api/events", get(events))
        .route("/api/workspaces/{namespace}/{name}/{action}", post(action))
        .route("/api/workspaces/{namespace}/{name}/terminal", get(terminal))
        .route("/api/workspaces/{namespace}/{name}/events", get(events_of))
        .route("/api/admin", get(admin));
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
        .layer(middleware::from_fn_with_state(portal.clone(), gate))
        .with_state(portal)
}

async fn gate(State(portal): State<Arc<Portal>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // A WebSocket (the terminal) is opened with a GET, but it runs commands: like any
    // change it must come from the portal's own page, which browsers say in its Origin.
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD)
        || headers.contains_key(header::UPGRADE);
    let verdict = portal.gate.check(
        changes,
        text(&header::HOST),
        text(&header::ORIGIN),
        text(&HeaderName::from_static(TOKEN_HEADER)),
        request.uri().query(),
    );
    let mut response = match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            // Info, not warn: any web page can make the browser send such requests, and
            // they must not flood the terminal the portal runs in (-v shows them).
            tracing::info!(
                method = %request.method(),
                path = request.uri().path(),
                ?refusal,
                "portal request refused"
            );
            (StatusCode::FORBIDDEN, refusal.message()).into_response()
        }
    };
    harden(response.headers_mut());
    response
}

/// No caching (the page holds the token), no framing, no referrer (the URL holds the
/// token), scripts and connections to this server only (styles may be inline: the
/// terminal sizes its rows with style elements). And no CORS headers at all:
/// another site's script cannot read a response.
fn harden(headers: &mut axum::http::HeaderMap) {
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; \
         img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The page, with this run's token for its own requests (its assets and API calls).
async fn index(State(portal): State<Arc<Portal>>) -> Response {
    let page = INDEX_HTML.replace("{{TOKEN}}", &portal.token);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn workspaces(State(portal): State<Arc<Portal>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        portal.snapshot(),
    )
        .into_response()
}

/// Server-sent events: the whole table now, then again after every change (coalesced),
/// and at least every [`REFRESH`].
async fn events(
    State(portal): State<Arc<Portal>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut changes = portal.mirrors.changes.clone();
    changes.mark_changed();
    let stream = futures::stream::unfold((portal, changes), |(portal, mut changes)| async move {
        if !changes.has_changed().unwrap_or(false) {
            // The sender lives as long as the portal: an error here cannot happen, and a
            // timeout is the periodic refresh.
            let _ = tokio::time::timeout(REFRESH, changes.changed()).await;
            tokio::time::sleep(COALESCE).await;
        }
        changes.borrow_and_update();
        let event = SseEvent::default()
            .event("workspaces")
            .data(portal.snapshot());
        Some((Ok(event), (portal, changes)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// POST /api/workspaces/NAMESPACE/NAME/ACTION: create (a JSON [`CreateForm`]), start,
/// stop or delete (keeping the data), each through the CLI's own code and in its words.
async fn action(
    State(portal): State<Arc<Portal>>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let reply = |status: StatusCode, body: serde_json::Value| (status, Json(body)).into_response();
    let Some(action) = Action::parse(&action) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!(
                "unknown action {action:?}: the portal can create, start, stop, scale, delete and purge a workspace"
            ) }),
        );
    };
    if let Some(scope) = &portal.scope {
        if *scope != namespace {
            return reply(
                StatusCode::NOT_FOUND,
                json!({ "error": format!(
                    "workspace {namespace}/{name} is not in namespace {scope}, which this portal shows; \
                     run kubectl devenv ui -n {namespace} (or -A)"
                ) }),
            );
        }
    }
    let cluster = Cluster {
        namespace: namespace.clone(),
        ..portal.cluster.clone()
    };
    // Only a workspace's StatefulSet (its label) is acted on: a name in the URL that is an
    // application's StatefulSet (or the namespace's `default` ServiceAccount) is refused.
    let workspace = if action == Action::Create {
        Ok(())
    } else {
        ensure_workspace(&cluster, &namespace, &name).await
    };
    let done = match (workspace, action) {
        (Err(e), _) => Err(e),
        (Ok(()), action) => match action {
            Action::Start | Action::Stop => {
                scale::stop_or_start_in(&cluster, &namespace, &name, action == Action::Stop).await
            }
            Action::Create => create(&portal, &cluster, &name, &body).await,
            Action::Delete => delete(&cluster, &namespace, &name).await,
            Action::Scale => match serde_json::from_slice::<ScaleForm>(&body) {
                Ok(form) => {
                    let tier = form
                        .tier
                        .as_deref()
                        .map(str::trim)
                        .filter(|t| !t.is_empty());
                    scale::scale_in(
                        &cluster,
                        &portal.install_namespace,
                        &namespace,
                        &name,
                        form.replicas,
                        tier,
                    )
                    .await
                }
                Err(e) => Err(Error::Usage(format!("the scale form: {e}"))),
            },
            Action::Purge => purge(&portal, &namespace, &name, &body).await,
        },
    };
    match done {
        Ok(message) => reply(StatusCode::OK, json!({ "message": message })),
        Err(e) => reply(status_of(&e), json!({ "error": e.to_string() })),
    }
}

/// Refuses `name` unless it is a workspace in `namespace`: a StatefulSet with the workspace
/// label naming it.
async fn ensure_workspace(cluster: &Cluster, namespace: &str, name: &str) -> Result<(), Error> {
    devenv_shared::build::workspace::validate_name(name)?;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), namespace);
    let call = crate::error::ApiCall::new("get", "statefulsets.apps", "workspace")
        .ns(namespace)
        .name(name);
    let sts = api.get_opt(name).await.map_err(cluster.err(call))?;
    match sts {
        Some(sts) => crate::commands::check_is_workspace(&sts, namespace, name),
        None => Err(Error::NotFound {
            kind: "workspace".into(),
            name: name.to_owned(),
            where_: format!("namespace {namespace:?}"),
            hint: "it may have been deleted already".into(),
        }),
    }
}

/// A form's command line, read by the CLI's own parser (one grammar, one parser); its
/// errors name the flag.
fn parse_command(argv: &[String]) -> Result<crate::cli::Command, Error> {
    <crate::cli::Cli as clap::Parser>::try_parse_from(argv)
        .map(|cli| cli.command)
        .map_err(|e| Error::Usage(e.render().to_string().trim().to_owned()))
}

/// The HTTP status of an action's error: the user's rights, a conflict, a missing
/// workspace, a refusal of the input, else the cluster's failure.
fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::AlreadyExists { .. } => StatusCode::CONFLICT,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        e if e.exit_code() == 2 => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The create form, read by the CLI's parser as the flags it stands for, then created by
/// the CLI's code (policy, checks, server-side dry run first).
async fn create(
    portal: &Portal,
    cluster: &Cluster,
    name: &str,
    body: &[u8],
) -> Result<String, Error> {
    let form: CreateForm = if body.is_empty() {
        CreateForm::default()
    } else {
        serde_json::from_slice(body).map_err(|e| Error::Usage(format!("the create form: {e}")))?
    };
    let crate::cli::Command::Create(args) = parse_command(&create_argv(name, &form))? else {
        return Err(Error::Usage("the create form is not a create".into()));
    };
    crate::commands::create::create_in(cluster, &portal.install_namespace, &args).await?;
    Ok(format!("workspace/{name} created"))
}

/// `kubectl devenv delete NAME --purge --yes [--no-backup]`, run whole (its backup first,
/// then the objects and the claims), once the name was typed.
async fn purge(portal: &Portal, namespace: &str, name: &str, body: &[u8]) -> Result<String, Error> {
    let form: PurgeForm =
        serde_json::from_slice(body).map_err(|e| Error::Usage(format!("the purge form: {e}")))?;
    let argv = purge_argv(name, &form).map_err(Error::Usage)?;
    let crate::cli::Command::Delete(args) = parse_command(&argv)? else {
        return Err(Error::Usage("the purge form is not a delete".into()));
    };
    let global = GlobalArgs {
        namespace: Some(namespace.to_owned()),
        ..portal.global.clone()
    };
    match crate::commands::delete::run(&global, &args).await? {
        0 => Ok(format!(
            "workspace/{name} and its volumes deleted{}",
            if form.no_backup {
                ", without a backup"
            } else {
                ", after a backup of them"
            }
        )),
        code => Err(Error::Other(anyhow::anyhow!(
            "delete --purge of {name} ended with status {code}; see the portal's terminal"
        ))),
    }
}

/// `kubectl devenv delete NAME`: the workspace's objects, never its claims.
async fn delete(cluster: &Cluster, namespace: &str, name: &str) -> Result<String, Error> {
    devenv_shared::build::workspace::validate_name(name)?;
    let deleted = crate::commands::delete::delete_workspace_objects(
        cluster,
        namespace,
        name,
        crate::cli::DryRun::None,
    )
    .await?;
    if deleted.is_empty() {
        return Err(Error::NotFound {
            kind: "workspace".into(),
            name: name.to_owned(),
            where_: format!("namespace {namespace:?}"),
            hint: "it may have been deleted already".into(),
        });
    }
    Ok(format!(
        "workspace/{name} deleted; its volumes are kept (create {name} again to use them)"
    ))
}

/// GET /api/workspaces/NAMESPACE/NAME/events: the workspace's recent events (its
/// StatefulSet's, pods', claims'), newest first, webhook denials in plain words. Read when
/// its page opens and when the table changes, not on a timer.
async fn events_of(
    State(portal): State<Arc<Portal>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let reply = |status: StatusCode, body: serde_json::Value| (status, Json(body)).into_response();
    if portal.scope.as_ref().is_some_and(|s| *s != namespace) {
        return reply(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("namespace {namespace} is not the one this portal shows") }),
        );
    }
    let api: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(portal.cluster.client.clone(), &namespace);
    match api.list(&kube::api::ListParams::default()).await {
        Ok(list) => {
            // The VS Code link, once `ssh-config --write` (or `code`) wrote its Host block.
            let vscode = crate::commands::ssh::SshFiles::locate()
                .ok()
                .and_then(|f| std::fs::read_to_string(f.config).ok())
                .and_then(|config| vscode_link(&config, &name, &namespace));
            reply(
                StatusCode::OK,
                json!({ "events": workspace_events(&list.items, &name, 50), "vscode": vscode }),
            )
        }
        Err(e) => {
            let call = crate::error::ApiCall::new("list", "events", "Event").ns(&namespace);
            let e = crate::error::from_kube(e, &call, &portal.cluster.server);
            reply(StatusCode::BAD_GATEWAY, json!({ "error": e.to_string() }))
        }
    }
}

/// GET /api/admin (with -A): what `status` says of the webhook (health, certificate
/// expiry), every namespace's quota in use, and which lifecycle controller leads. Each
/// part that cannot be read says why; the others are still shown.
async fn admin(State(portal): State<Arc<Portal>>) -> Response {
    if portal.scope.is_some() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "the admin view is for all namespaces: run kubectl devenv ui -A" })),
        )
            .into_response();
    }
    let client = portal.cluster.client.clone();
    let ns = portal.install_namespace.as_str();
    let quotas_api = Api::<k8s_openapi::api::core::v1::ResourceQuota>::all(client.clone());
    let lease_api = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client, ns);
    let all = kube::api::ListParams::default();
    let (status, quotas, lease) = futures::join!(
        crate::commands::status::report(&portal.cluster, ns),
        quotas_api.list(&all),
        lease_api.get_opt(devenv_shared::build::install::LIFECYCLE_LEASE),
    );
    let quotas = match quotas {
        Ok(list) => json!(quota_rows(&list.items)),
        Err(e) => {
            json!({ "error": format!("cannot list resource quotas: {}", crate::error::chain(&e)) })
        }
    };
    let leader = match lease {
        Ok(Some(lease)) => {
            let spec = lease.spec.unwrap_or_default();
            json!({
                "holder": spec.holder_identity,
                "renewed": spec.renew_time.map(|t| t.0.to_string()),
            })
        }
        Ok(None) => {
            json!({ "error": "no lifecycle controller has taken the lease (is it installed?)" })
        }
        Err(e) => json!({ "error": format!("cannot read the lease: {}", crate::error::chain(&e)) }),
    };
    (
        StatusCode::OK,
        Json(json!({ "status": status, "quotas": quotas, "leader": leader })),
    )
        .into_response()
}

/// GET /api/workspaces/NAMESPACE/NAME/terminal (a WebSocket): a login shell in the
/// workspace's first pod (`?pod=NAME-N` for another of a pool) with a terminal, found,
/// checked and kept alive as `kubectl devenv exec` does. Binary frames carry the terminal's
/// bytes both ways; a text frame `{"cols":C,"rows":R}` resizes it. The close frame says how
/// the shell ended.
async fn terminal(
    State(portal): State<Arc<Portal>>,
    Path((namespace, name)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let refuse = |status: StatusCode, message: String| (status, message).into_response();
    if let Some(scope) = &portal.scope {
        if *scope != namespace {
            return refuse(
                StatusCode::NOT_FOUND,
                format!("workspace {namespace}/{name} is not in namespace {scope}, which this portal shows"),
            );
        }
    }
    if let Err(e) = devenv_shared::build::workspace::validate_name(&name) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    let pod = match request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("pod=")))
    {
        None => format!("{name}-0"),
        Some(pod) => {
            let member = pod
                .strip_prefix(&format!("{name}-"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !member {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "pod {pod:?} is not a pod of workspace {name} ({name}-0, {name}-1, ...)"
                    ),
                );
            }
            pod.to_owned()
        }
    };
    let key = match request.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(key)
            if request.headers().get(header::UPGRADE).is_some_and(|u| {
                u.to_str()
                    .is_ok_and(|u| u.eq_ignore_ascii_case("websocket"))
            }) =>
        {
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the terminal is a WebSocket: open it from the portal's page".into(),
            )
        }
    };
    let cluster = Cluster {
        namespace: namespace.clone(),
        ..portal.cluster.clone()
    };
    let interval = crate::activity::heartbeat_interval(
        portal
            .policy
            .as_ref()
            .map_or(LifecyclePolicy::default().idle_timeout, |p| {
                p.lifecycle.idle_timeout
            }),
    );
    let beat = crate::exec::Heartbeat {
        interval,
        beat: Box::new(crate::activity::heartbeat_beat(
            cluster.client.clone(),
            &namespace,
            &name,
            |message| tracing::info!("{message}"),
        )),
    };
    // The pod must be the workspace's (its label, not only its name), as `exec` checks.
    let pods: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(cluster.client.clone(), &namespace);
    match pods.get_opt(&pod).await {
        Ok(Some(p)) if p.labels().get(WORKSPACE_LABEL).is_some_and(|w| *w == name) => {}
        Ok(_) => {
            return refuse(
                StatusCode::NOT_FOUND,
                format!(
                "pod {pod} is not a running pod of workspace {name} in {namespace}; is it started?"
            ),
            )
        }
        Err(e) => {
            let call = crate::error::ApiCall::new("get", "pods", "Pod")
                .ns(&namespace)
                .name(&pod);
            return refuse(
                StatusCode::BAD_GATEWAY,
                crate::error::from_kube(e, &call, &cluster.server).to_string(),
            );
        }
    }
    // Opened before the upgrade, so a pod that is not running is an HTTP error the page
    // can show, not a socket that closes.
    let session = match crate::exec::open_terminal(
        cluster.client.clone(),
        &namespace,
        &pod,
        crate::exec::default_shell_command(),
        beat,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                format!("cannot open a terminal in {namespace}/{pod}: {e:#}"),
            )
        }
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    hyper_util::rt::TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                pump_terminal(socket, session).await;
            }
            Err(e) => tracing::warn!("terminal upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, key)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Copies the terminal's bytes between the browser and the pod until either side ends,
/// then says in the close frame how the shell ended.
async fn pump_terminal<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    mut session: crate::exec::TerminalSession,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
    use tokio_tungstenite::tungstenite::Message;

    let (mut to_browser, mut from_browser) = socket.split();
    let attached = &mut session.attached;
    let status = attached.take_status();
    let (Some(mut stdin), Some(mut stdout)) = (attached.stdin(), attached.stdout()) else {
        tracing::warn!("the terminal's exec has no stdin or stdout");
        return;
    };
    let mut sizes = attached.terminal_size();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = stdout.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_browser.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            },
            message = from_browser.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if stdin.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    let size: Option<(u16, u16)> = serde_json::from_str::<serde_json::Value>(text.as_str())
                        .ok()
                        .and_then(|v| Some((
                            u16::try_from(v["cols"].as_u64()?).ok()?,
                            u16::try_from(v["rows"].as_u64()?).ok()?,
                        )));
                    if let (Some((width, height)), Some(sizes)) = (size, sizes.as_mut()) {
                        let _ = sizes.send(kube::api::TerminalSize { width, height }).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin);
    let reason = match status {
        Some(status) => match tokio::time::timeout(Duration::from_secs(5), status).await {
            Ok(Some(s)) if s.status.as_deref() == Some("Success") => "the shell exited".to_owned(),
            Ok(Some(s)) => format!(
                "the shell ended: {}",
                s.message.unwrap_or_else(|| s.status.unwrap_or_default())
            ),
            _ => "the session ended".to_owned(),
        },
        None => "the session ended".to_owned(),
    };
    let _ = to_browser
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: reason.into(),
        })))
        .await;
}

/// A new token from the process's cryptographic random source (rustls' provider).
fn new_token() -> Result<String, Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Other(anyhow::anyhow!("no random source for the portal's token")))?;
    Ok(token_from(&bytes))
}

/// Opens the page in the user's browser (`$BROWSER`, else the desktop's opener) through a
/// file only this user can read that redirects to the URL: a browser's command line is
/// visible to every user of the machine (`/proc/PID/cmdline`), the token must not be.
/// The directory is removed when the returned guard is dropped, at exit.
fn open_browser(url: &str) -> Result<tempfile::TempDir, String> {
    // In the user's own runtime directory when there is one (0700 by definition), and in
    // a directory and a file created private, never made private after the fact: a file
    // readable for a moment can be opened by another user and read after a chmod.
    let mut builder = tempfile::Builder::new();
    builder.prefix("devenv-ui-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => builder.tempdir_in(runtime),
        None => builder.tempdir(),
    }
    .map_err(|e| format!("cannot make a private directory for the redirect page: {e}"))?;
    let page = dir.path().join("open.html");
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={url}\">\
         <title>kubectl devenv ui</title><a href=\"{url}\">open the portal</a>\n"
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        use std::io::Write;
        let mut file = options
            .open(&page)
            .map_err(|e| format!("cannot create {}: {e}", page.display()))?;
        file.write_all(html.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", page.display()))?;
    }
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| {
            if cfg!(target_os = "macos") {
                "open".to_owned()
            } else if cfg!(windows) {
                "explorer".to_owned()
            } else {
                "xdg-open".to_owned()
            }
        });
    std::process::Command::new(&opener)
        .arg(&page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {opener}: {e}"))?;
    Ok(dir)
}

pub async fn run(global: &GlobalArgs, args: &UiArgs) -> Result<i32, Error> {
    let cluster = client::connect(global).await?;
    let scope = (!args.all_namespaces).then(|| cluster.namespace.clone());
    let (policy, tiers) =
        match effective_policy(Some(&cluster), &global.install_namespace, None).await {
            Ok(policy) => {
                let tiers = tier_choices(&policy);
                (Some(policy), tiers)
            }
            Err(e) => {
                eprintln!("warning: lifecycle times and tiers unknown: {e}");
                (None, Vec::new())
            }
        };
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, args.port))
        .await
        .map_err(|e| {
            Error::Usage(format!(
                "cannot listen on 127.0.0.1:{}: {e}; choose another --port (0 picks a free one)",
                args.port
            ))
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Other(anyhow::anyhow!("the portal's own address: {e}")))?
        .port();
    let token = new_token()?;
    let gate = Gate::new(port, token.clone());
    let url = gate.url();
    let mirrors = Mirrors::start(&cluster, scope.as_deref());
    let shown = match &scope {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_owned(),
    };
    let portal = Arc::new(Portal {
        cluster,
        scope,
        policy,
        tiers,
        install_namespace: global.install_namespace.clone(),
        global: global.clone(),
        gate,
        token,
        mirrors,
    });
    println!("Serving the devenv portal for {shown} on 127.0.0.1 only (Ctrl-C to stop):");
    println!("    {url}");
    let _redirect = if args.no_browser {
        None
    } else {
        match open_browser(&url) {
            Ok(dir) => Some(dir),
            Err(e) => {
                eprintln!("warning: could not open a browser ({e}); open the URL above");
                None
            }
        }
    };
    // Event streams never end by themselves, so a graceful drain would wait for ever:
    // Ctrl-C ends the server and every stream with it.
    tokio::select! {
        served = axum::serve(listener, router(portal)) => {
            served.map_err(|e| Error::Other(anyhow::anyhow!("the portal's server: {e}")))?;
        }
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A portal on port 4321 whose cluster is nowhere (127.0.0.1:9): refusals are decided
    /// before anything reads it, and the page and assets need no cluster.
    async fn portal() -> Arc<Portal> {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a client");
        let cluster = Cluster {
            client,
            namespace: "team".into(),
            server: "http://127.0.0.1:9".into(),
        };
        let mirrors = Mirrors::start(&cluster, Some("team"));
        Arc::new(Portal {
            cluster,
            scope: Some("team".into()),
            policy: None,
            tiers: Vec::new(),
            install_namespace: "devenv-system".into(),
            global: GlobalArgs::default(),
            gate: Gate::new(4321, TOKEN.into()),
            token: TOKEN.into(),
            mirrors,
        })
    }

    async fn send(
        request: axum::http::Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router(portal().await)
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> axum::http::Request<Body> {
        let mut r = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(Body::empty()).expect("a request")
    }

    #[tokio::test]
    async fn the_page_needs_the_token_and_carries_it_to_its_assets() {
        let host = ("host", "127.0.0.1:4321");
        let (status, headers, body) = send(request("GET", "/", &[host])).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("needs the token"), "{body}");
        assert_eq!(
            headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        assert!(headers.get("access-control-allow-origin").is_none());

        let (status, headers, body) =
            send(request("GET", &format!("/?token={TOKEN}"), &[host])).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(&format!("app.js?token={TOKEN}")), "{body}");
        assert!(!body.contains("{{TOKEN}}"));
        let csp = headers
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(headers.get("access-control-allow-origin").is_none());

        let (status, _, body) =
            send(request("GET", &format!("/app.js?token={TOKEN}"), &[host])).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("EventSource"), "the script watches the table");
        let (status, _, _) = send(request("GET", "/app.js", &[host])).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "assets need the token too");
    }

    #[tokio::test]
    async fn foreign_hosts_and_origins_are_refused_before_any_cluster_call() {
        let token = ("x-devenv-token", TOKEN);
        let (status, _, body) = send(request(
            "GET",
            "/api/workspaces",
            &[("host", "evil.example:4321"), token],
        ))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("Host header"), "{body}");
        let host = ("host", "127.0.0.1:4321");
        let (status, _, body) = send(request(
            "POST",
            "/api/workspaces/team/alice/stop",
            &[host, token, ("origin", "http://evil.example")],
        ))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("another site"), "{body}");
        let (status, _, _) = send(request(
            "POST",
            "/api/workspaces/team/alice/stop",
            &[host, token],
        ))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a change without an Origin");
        // The terminal is a GET, but a WebSocket runs commands: it needs the Origin too.
        let (status, _, body) = send(request(
            "GET",
            &format!("/api/workspaces/team/alice/terminal?token={TOKEN}"),
            &[host, ("upgrade", "websocket"), ("connection", "upgrade")],
        ))
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "a WebSocket without an Origin"
        );
        assert!(body.contains("another site"), "{body}");
        let (status, _, _) = send(request(
            "GET",
            &format!("/api/workspaces/team/alice/terminal?token={TOKEN}"),
            &[
                host,
                ("upgrade", "websocket"),
                ("origin", "http://evil.example"),
            ],
        ))
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a cross-site WebSocket");
    }

    #[tokio::test]
    async fn actions_are_checked_before_the_cluster_is_asked() {
        let headers = [
            ("host", "127.0.0.1:4321"),
            ("x-devenv-token", TOKEN),
            ("origin", "http://127.0.0.1:4321"),
        ];
        let (status, _, body) = send(request(
            "POST",
            "/api/workspaces/team/alice/destroy",
            &headers,
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            body.contains("can create, start, stop, scale, delete and purge"),
            "{body}"
        );
        let mut bad_form = request("POST", "/api/workspaces/team/alice/create", &headers);
        *bad_form.body_mut() = Body::from(r#"{"replicas": 100}"#);
        let (status, _, body) = send(bad_form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body.contains("the create form") && body.contains("replicas"),
            "{body}"
        );
        let (status, _, body) = send(request(
            "POST",
            "/api/workspaces/other/alice/stop",
            &headers,
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("not in namespace team"), "{body}");
        let (status, _, body) = send(request(
            "POST",
            "/api/workspaces/team/Bad_Name/stop",
            &headers,
        ))
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let ws = [
            ("host", "127.0.0.1:4321"),
            ("origin", "http://127.0.0.1:4321"),
            ("upgrade", "websocket"),
        ];
        let (status, _, body) = send(request(
            "GET",
            &format!("/api/workspaces/other/alice/terminal?token={TOKEN}"),
            &ws,
        ))
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _, body) = send(request(
            "GET",
            &format!("/api/workspaces/team/alice/terminal?token={TOKEN}&pod=bob-0"),
            &ws,
        ))
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "another workspace's pod: {body}"
        );
        assert!(body.contains("not a pod of workspace alice"), "{body}");
    }

    #[tokio::test]
    async fn the_table_before_the_watches_synced_says_so() {
        let (status, _, body) = send(request(
            "GET",
            "/api/workspaces",
            &[("host", "127.0.0.1:4321"), ("x-devenv-token", TOKEN)],
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["namespace"], "team");
        assert_eq!(doc["synced"], false);
        assert_eq!(doc["workspaces"], json!([]));
    }
}
