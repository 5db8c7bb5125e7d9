//! The Seed datacenter node fields that decide where worker nodes pull images from, and the
//! `kubectl kkp seedproxy` flag that sets each: `audit` names them for a node-level finding, `seedproxy`
//! is what changes them.
//!
//! Knows KKP's Seed field names (`spec.datacenters.<dc>.node`, KKP ≥ v2.20 camelCase) and seedproxy's
//! flag names; nothing of reading or patching Seeds.

/// One node field of a Seed datacenter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeKnob {
    /// The JSON key below `spec.datacenters.<dc>.node` (`pauseImage`).
    pub field: &'static str,
    /// The `kubectl kkp seedproxy` flag that sets it (`--pause-image`).
    pub flag: &'static str,
    /// What it decides on the nodes.
    pub decides: &'static str,
}

impl NodeKnob {
    /// The dotted path of this field for datacenter `dc` (`spec.datacenters.<dc>.node.pauseImage`).
    pub fn path(&self, dc: &str) -> String {
        format!("spec.datacenters.{dc}.node.{}", self.field)
    }

    /// The knob named by its JSON key.
    pub fn by_field(field: &str) -> Option<&'static NodeKnob> {
        NODE_FIELDS.iter().find(|k| k.field == field)
    }
}

/// The node fields of a Seed datacenter that matter to an air-gapped install.
pub const NODE_FIELDS: &[NodeKnob] = &[
    NodeKnob {
        field: "pauseImage",
        flag: "--pause-image",
        decides: "the pause (sandbox) image kubelet runs every pod with",
    },
    NodeKnob {
        field: "insecureRegistries",
        flag: "--insecure-registry",
        decides: "registries containerd pulls from over plain HTTP or without a trusted CA",
    },
    NodeKnob {
        field: "registryMirrors",
        flag: "--registry-mirror",
        decides: "the mirrors containerd asks for docker.io images",
    },
    NodeKnob {
        field: "httpProxy",
        flag: "--http-proxy",
        decides: "the HTTP(S) proxy of the nodes",
    },
    NodeKnob {
        field: "noProxy",
        flag: "--no-proxy",
        decides: "what the nodes reach without the proxy",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: crate::seedproxy::SeedproxyArgs,
    }

    #[test]
    fn every_node_field_is_one_seedproxy_sets_with_that_flag() {
        for knob in NODE_FIELDS {
            // seedproxy knows the field by this name …
            let field = crate::seedproxy::NodeField::parse(knob.field).unwrap();
            assert_eq!(field.json_name(), knob.field);
            // … and takes the flag.
            let value = match knob.field {
                "pauseImage" => "reg.local/pause:3.10",
                "httpProxy" => "http://proxy.corp:3128",
                "registryMirrors" => "https://reg.local",
                _ => "reg.local",
            };
            let parsed = Cli::try_parse_from(["seedproxy", "seed", knob.flag, value]);
            assert!(parsed.is_ok(), "{}: {:?}", knob.flag, parsed.err());
        }
        assert!(Cli::try_parse_from(["seedproxy", "seed", "--no-such-flag", "x"]).is_err());
        assert_eq!(
            NodeKnob::by_field("pauseImage").unwrap().path("dc-1"),
            "spec.datacenters.dc-1.node.pauseImage"
        );
        assert!(NodeKnob::by_field("nope").is_none());
    }
}
