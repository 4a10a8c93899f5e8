//! Reading an AdmissionReview: the body into kube's types (fast), and the object into its
//! typed kind with an error that says why it cannot be read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::{DynamicObject, TypeMeta};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// An object that cannot be read as the kind its request is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the object cannot be read as a {kind}: {reason}")]
pub struct Unreadable {
    /// `Pod`, `StatefulSet`.
    pub kind: String,
    /// serde's reason, or the kind it really is.
    pub reason: String,
}

/// Parses an AdmissionReview body into kube's types, as `serde_json::from_slice` would,
/// in a fraction of the time.
///
/// kube's `AdmissionReview` and `DynamicObject` use `#[serde(flatten)]`, which makes serde
/// buffer the whole review (the pod twice over, for `object` and `oldObject`) in an
/// intermediate tree before building the real one: the biggest single cost of a request.
/// Here the body becomes one `serde_json::Value`, the objects are taken out of it, the
/// small rest is read into kube's types, and each object is split into type, metadata and
/// data directly. An object of an unusual shape (`apiVersion` without `kind`, say) is
/// read the ordinary way, so the result is always what serde's derive gives.
pub fn parse_review(bytes: &[u8]) -> Result<AdmissionReview<DynamicObject>, serde_json::Error> {
    let mut doc: Value = match serde_json::from_slice(bytes) {
        Ok(doc) => doc,
        // A `Value` insists on every string being valid, even in fields serde's derive
        // skips unread (a lone surrogate escape in an unknown field, found by fuzzing):
        // let the derive have the last word.
        Err(_) => return serde_json::from_slice(bytes),
    };
    let mut object = None;
    let mut old_object = None;
    if let Some(Value::Object(request)) = doc.get_mut("request") {
        for (slot, key) in [(&mut object, "object"), (&mut old_object, "oldObject")] {
            if let Some(value @ Value::Object(_)) = request.get_mut(key) {
                // Leaves null behind, which reads as "no object" below.
                *slot = Some(value.take());
            }
        }
    }
    let mut review = AdmissionReview::<DynamicObject>::deserialize(&doc)?;
    if let Some(request) = review.request.as_mut() {
        request.object = object.map(dynamic_object).transpose()?;
        request.old_object = old_object.map(dynamic_object).transpose()?;
    }
    Ok(review)
}

/// A JSON object as kube's `DynamicObject` (see [`parse_review`]).
fn dynamic_object(mut value: Value) -> Result<DynamicObject, serde_json::Error> {
    let Value::Object(map) = &mut value else {
        return serde_json::from_value(value);
    };
    let types = match (map.get("apiVersion"), map.get("kind")) {
        (Some(Value::String(_)), Some(Value::String(_))) => {
            let mut text = |key: &str| match map.remove(key) {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            Some(TypeMeta {
                api_version: text("apiVersion"),
                kind: text("kind"),
            })
        }
        (None, None) => None,
        _ => return serde_json::from_value(value),
    };
    let metadata = match map.remove("metadata") {
        Some(meta) => ObjectMeta::deserialize(&meta)?,
        None => ObjectMeta::default(),
    };
    Ok(DynamicObject {
        types,
        metadata,
        data: value,
    })
}

/// Converts the dynamic object to its typed kind; the error names the kind and serde's reason.
///
/// Reads the body straight from the parsed `data` (borrowing, no intermediate
/// `Value` of the whole object: this is on every request's path) and takes the
/// metadata as parsed. A stated apiVersion/kind must be the expected one, as a
/// typed parse of the whole object would insist.
pub(crate) fn typed<K>(obj: &DynamicObject, kind: &str) -> Result<K, Unreadable>
where
    K: DeserializeOwned + k8s_openapi::Resource + kube::Resource<DynamicType = ()>,
{
    let unreadable = |reason: String| Unreadable {
        kind: kind.to_string(),
        reason,
    };
    if let Some(types) = &obj.types {
        if types.kind != K::KIND || types.api_version != K::API_VERSION {
            return Err(unreadable(format!(
                "it is a {} {}, not a {} {}",
                types.api_version,
                types.kind,
                K::API_VERSION,
                K::KIND
            )));
        }
    }
    let mut typed = K::deserialize(&obj.data).map_err(|e| unreadable(e.to_string()))?;
    *typed.meta_mut() = obj.metadata.clone();
    Ok(typed)
}

/// The object as its typed kind, with its namespace filled from the request (objects being
/// created may omit it; claim and Secret lookups need it).
pub(crate) fn typed_in_namespace<K>(
    req: &AdmissionRequest<DynamicObject>,
    obj: &DynamicObject,
    kind: &str,
) -> Result<K, Unreadable>
where
    K: DeserializeOwned + k8s_openapi::Resource + kube::Resource<DynamicType = ()>,
{
    let mut typed: K = typed(obj, kind)?;
    if typed.meta().namespace.is_none() {
        typed.meta_mut().namespace.clone_from(&req.namespace);
    }
    Ok(typed)
}
