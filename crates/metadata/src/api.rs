//! The HTTP API pods see, exactly as the appc metadata spec names it, under
//! `/<token>/acMetadata/v1/`. A request without a known token (or from
//! another address than the token's pod) gets 401 and an empty body.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::Value;

use crate::protocol::Registration;
use crate::state::{self, PodRecord};

pub type Shared = Arc<Mutex<state::State>>;

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=us-ascii";

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, content_type.to_string())],
        body.into(),
    )
        .into_response()
}

fn ok_json(v: &Value) -> Response {
    reply(StatusCode::OK, JSON, v.to_string())
}

fn ok_text(s: &str) -> Response {
    reply(StatusCode::OK, TEXT, s.to_string())
}

fn status(code: StatusCode) -> Response {
    code.into_response()
}

fn error(code: StatusCode, msg: &str) -> Response {
    reply(code, TEXT, format!("{msg}\n"))
}

/// Same-address check: a pod on a private network must call from its own
/// address, a pod on the host's network from a loopback address (an IPv4
/// peer may show as IPv4-mapped IPv6).
fn from_pod(record: &PodRecord, peer: IpAddr) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    match &record.registration.ip {
        Some(ip) => ip.parse::<IpAddr>().is_ok_and(|ip| ip == peer),
        None => peer.is_loopback(),
    }
}

/// Owner check for an ordinary user's pods (whose requests come from the
/// host's loopback, where every local user can connect): the client
/// socket must be the service user's own (a user-mode network's pasta), or
/// one of an id the service's user namespace maps (a pod on the host's
/// network: the user or its subordinate ids, never another user's).
fn from_owner(reg: &Registration, peer: SocketAddr, service: SocketAddr) -> bool {
    if !reg.forwarded && !reg.mapped_peer {
        return true;
    }
    match crate::peer::socket_uid(peer, service) {
        Some(uid) if reg.forwarded => uid == rustix::process::geteuid().as_raw(),
        Some(uid) => uid != crate::peer::overflow_uid(),
        None => false,
    }
}

/// Annotations `Set` (appc): replace by name in place, else append.
fn merge_annotations(base: &Value, overrides: &Value) -> Value {
    let mut out: Vec<Value> = base.as_array().cloned().unwrap_or_default();
    for a in overrides.as_array().into_iter().flatten() {
        match out.iter_mut().find(|b| b["name"] == a["name"]) {
            Some(slot) => *slot = a.clone(),
            None => out.push(a.clone()),
        }
    }
    Value::Array(out)
}

fn annotation(list: &Value, name: &str) -> Response {
    list.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == name)
        .and_then(|a| a["value"].as_str())
        .map_or_else(|| status(StatusCode::NOT_FOUND), ok_text)
}

pub async fn handle(
    State(shared): State<Shared>,
    ConnectInfo(skiff_io::listener::Peer(peer)): ConnectInfo<skiff_io::listener::Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches('/');
    let Some((token, rest)) = path.split_once('/') else {
        return status(StatusCode::UNAUTHORIZED);
    };
    let Ok(state) = shared.lock() else {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let Some(pod) = state.pod(token).filter(|p| from_pod(p, peer.ip())) else {
        return status(StatusCode::UNAUTHORIZED);
    };
    if !from_owner(&pod.registration, peer, state.listen) {
        return status(StatusCode::UNAUTHORIZED);
    }
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("AppContainer") {
        return error(
            StatusCode::BAD_REQUEST,
            "header Metadata-Flavor: AppContainer required",
        );
    }
    let Some(route) = rest.strip_prefix("acMetadata/v1/") else {
        return status(StatusCode::NOT_FOUND);
    };
    let reg = &pod.registration;
    let manifest: Value = serde_json::from_str(&reg.manifest).unwrap_or(Value::Null);
    let parts: Vec<&str> = route.split('/').collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["pod", "annotations"]) => ok_json(&manifest["annotations"]),
        (&Method::GET, ["pod", "annotations", name]) => annotation(&manifest["annotations"], name),
        (&Method::GET, ["pod", "manifest"]) => reply(StatusCode::OK, JSON, reg.manifest.clone()),
        (&Method::GET, ["pod", "uuid"]) => ok_text(&reg.uuid),
        (&Method::GET, ["apps", app, rest @ ..]) => {
            let Some(image) = reg.apps.iter().find(|a| a.name == *app) else {
                return status(StatusCode::NOT_FOUND);
            };
            let image_manifest: Value =
                serde_json::from_str(&image.manifest).unwrap_or(Value::Null);
            let pod_app = manifest["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["name"] == *app)
                .cloned()
                .unwrap_or(Value::Null);
            let annotations =
                || merge_annotations(&image_manifest["annotations"], &pod_app["annotations"]);
            match rest {
                ["annotations"] => ok_json(&annotations()),
                ["annotations", name] => annotation(&annotations(), name),
                ["image", "manifest"] => reply(StatusCode::OK, JSON, image.manifest.clone()),
                ["image", "id"] => ok_text(&image.image_id),
                _ => status(StatusCode::NOT_FOUND),
            }
        }
        (&Method::POST, ["pod", "hmac", "sign"]) => {
            let Some(content) = form_field(&body, "content") else {
                return error(StatusCode::BAD_REQUEST, "form field 'content' required");
            };
            let Some(uuid) = state::uuid_bytes(&reg.uuid) else {
                return status(StatusCode::INTERNAL_SERVER_ERROR);
            };
            let sig = state.sign(&uuid, content.as_bytes());
            ok_text(&base64::engine::general_purpose::STANDARD.encode(sig))
        }
        (&Method::POST, ["pod", "hmac", "verify"]) => {
            let (Some(content), Some(uuid), Some(signature)) = (
                form_field(&body, "content"),
                form_field(&body, "uuid"),
                form_field(&body, "signature"),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "form fields 'content', 'uuid' and 'signature' required",
                );
            };
            let (Some(uuid), Ok(signature)) = (
                state::uuid_bytes(&uuid),
                base64::engine::general_purpose::STANDARD.decode(signature.trim()),
            ) else {
                return error(StatusCode::BAD_REQUEST, "malformed uuid or signature");
            };
            if state.verify(&uuid, content.as_bytes(), &signature) {
                ok_text("")
            } else {
                status(StatusCode::FORBIDDEN)
            }
        }
        (&Method::GET | &Method::POST, _) => status(StatusCode::NOT_FOUND),
        _ => status(StatusCode::METHOD_NOT_ALLOWED),
    }
}

/// A field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_annotations_merge_like_appc_set() {
        let image = serde_json::json!([{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]);
        let pod = serde_json::json!([{"name": "b", "value": "X"}, {"name": "c", "value": "3"}]);
        assert_eq!(
            merge_annotations(&image, &pod),
            serde_json::json!([{"name": "a", "value": "1"}, {"name": "b", "value": "X"}, {"name": "c", "value": "3"}])
        );
        assert_eq!(
            merge_annotations(&Value::Null, &Value::Null),
            serde_json::json!([])
        );
    }
}
