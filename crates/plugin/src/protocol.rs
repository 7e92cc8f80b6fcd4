//! Request and response bodies of Docker's volume plugin protocol. Field names are the daemon's
//! (PascalCase, and `ID`, not `Id`). `Opts` is `null` when the user gives no `-o`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub opts: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameRequest {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountRequest {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "ID", default)]
    pub id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActivateResponse {
    pub implements: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    pub scope: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CapabilitiesResponse {
    pub capabilities: Capabilities,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrResponse {
    pub err: String,
}

impl From<Result<(), String>> for ErrResponse {
    fn from(r: Result<(), String>) -> Self {
        ErrResponse {
            err: r.err().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountpointResponse {
    pub mountpoint: String,
    pub err: String,
}

impl From<Result<String, String>> for MountpointResponse {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(m) => MountpointResponse {
                mountpoint: m,
                err: String::new(),
            },
            Err(e) => MountpointResponse {
                mountpoint: String::new(),
                err: e,
            },
        }
    }
}

/// A volume as Get and List report it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInfo {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mountpoint: String,
    /// RFC 3339; anything else makes the daemon drop the volume.
    pub created_at: String,
    pub status: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetResponse {
    pub volume: Option<VolumeInfo>,
    pub err: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListResponse {
    pub volumes: Vec<VolumeInfo>,
    pub err: String,
}
