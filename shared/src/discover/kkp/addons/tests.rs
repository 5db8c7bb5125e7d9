use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/addons")
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn cni(kind: &str, version: &str) -> Cni {
    Cni {
        kind: kind.into(),
        version: version.into(),
    }
}

/// KKP v2.31's default matrix: 31 versions × 15 providers × 40 CNIs.
fn default_matrix() -> Matrix {
    let mut versions = Vec::new();
    for p in [0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13] {
        versions.push(Version::new(1, 33, p));
    }
    versions.extend((1..=10).map(|p| Version::new(1, 34, p)));
    versions.extend((0..=7).map(|p| Version::new(1, 35, p)));
    versions.push(Version::new(1, 36, 3));
    let providers = [
        "alibaba",
        "anexia",
        "aws",
        "azure",
        "bringyourown",
        "baremetal",
        "edge",
        "digitalocean",
        "gcp",
        "hetzner",
        "kubevirt",
        "nutanix",
        "openstack",
        "vmwareclouddirector",
        "vsphere",
    ];
    let mut cnis: Vec<Cni> = (21..=31).map(|m| cni("canal", &format!("v3.{m}"))).collect();
    for c in [
        "v1.11", "v1.12", "1.13.0", "1.13.3", "1.13.4", "1.13.6", "1.13.7", "1.13.8", "1.13.14", "1.14.1",
        "1.14.2", "1.14.3", "1.14.9", "1.14.16", "1.15.3", "1.15.10", "1.15.16", "1.16.6", "1.16.9",
        "1.17.7", "1.17.12", "1.17.14", "1.17.16", "1.18.2", "1.18.6", "1.18.8", "1.18.10", "1.19.4",
    ] {
        cnis.push(cni("cilium", c));
    }
    cnis.push(cni("none", ""));
    Matrix {
        versions,
        providers: providers.iter().map(|p| p.to_string()).collect(),
        cnis,
    }
}

/// Test-only stand-in for the manifest scanner: every `image:` value in the text.
fn images_in(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            let rest = t.strip_prefix("image:")?;
            let val = rest.trim().trim_matches(|c| c == '\'' || c == '"');
            (!val.is_empty()).then(|| val.to_string())
        })
        .collect()
}

fn images_of(rendered: &[RenderedAddon], addon: &str) -> BTreeSet<String> {
    rendered
        .iter()
        .filter(|r| r.name == addon)
        .flat_map(|r| r.outputs.iter().flat_map(|o| images_in(o)))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn loads_every_addon_directory_with_only_its_yaml_files_in_go_order() {
    let addons = load_addons(&fixtures()).unwrap();
    let names: Vec<&str> = addons.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "canal",
            "cloud-node-manager",
            "csi",
            "hubble",
            "kube-proxy",
            "kubevirt-csi",
            "rbac"
        ]
    );
    let csi = addons.iter().find(|a| a.name == "csi").unwrap();
    // customizations.patch and README.md contain broken template syntax: they must not be read.
    assert_eq!(csi.files, ["azure-file/driver.yaml", "openstack/driver.yaml"]);
}

#[test]
fn symlinks_are_not_followed_and_plain_files_at_top_level_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("evil.yaml"), "image: {{ Image \"evil\" }}\n").unwrap();
    let root = tmp.path().join("addons");
    fs::create_dir_all(root.join("a/sub")).unwrap();
    fs::write(root.join("a/x.yaml"), "kind: X\n").unwrap();
    fs::write(root.join("a/sub/y.yaml"), "kind: Y\n").unwrap();
    fs::write(root.join("a.yaml"), "{{ broken").unwrap();
    std::os::unix::fs::symlink(outside.join("evil.yaml"), root.join("a/link.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("a/linkdir")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked-addon")).unwrap();
    let addons = load_addons(&root).unwrap();
    assert_eq!(addons.len(), 1);
    // Go's WalkDir order: sub/ before x.yaml.
    assert_eq!(addons[0].files, ["sub/y.yaml", "x.yaml"]);
}

#[test]
fn kube_proxy_yields_one_image_per_patch_version_and_renders_once_per_version() {
    let addons: Vec<Addon> = load_addons(&fixtures())
        .unwrap()
        .into_iter()
        .filter(|a| a.name == "kube-proxy")
        .collect();
    let matrix = Matrix {
        versions: vec![v("1.33.2"), v("1.33.3"), v("1.34.1")],
        providers: vec!["aws".into(), "openstack".into()],
        cnis: vec![cni("canal", "v3.31"), cni("cilium", "1.19.4"), cni("none", "")],
    };
    let r = render_addons(&addons, &matrix).unwrap();
    assert_eq!(
        images_of(&r, "kube-proxy"),
        set(&[
            "registry.k8s.io/kube-proxy:v1.33.2",
            "registry.k8s.io/kube-proxy:v1.33.3",
            "registry.k8s.io/kube-proxy:v1.34.1"
        ])
    );
    assert_eq!(
        r[0].combinations, 27,
        "aws is rendered with and without the external CCM"
    );
    assert_eq!(
        r[0].renders, 3,
        "kube-proxy reads the version, not provider or CNI"
    );
    let out = &r[0].outputs[0];
    assert!(out.starts_with("# Source: kube-proxy/configmap.yaml\n"), "{out}");
    assert!(out.contains("# Source: kube-proxy/daemonset.yaml\n"), "{out}");
    assert!(out.contains("clusterCIDR: \"172.25.0.0/16\""), "{out}");
    assert!(out.contains("strictARP: true"), "{out}");
    // SHA-1 of Go's json.Marshal of the mock cluster's ClusterNetwork (fields in struct order):
    // {"DNSDomain":"cluster.local",…,"IPAMAllocations":null,"NodePortRange":""}.
    let hash = out
        .split("checksum/config: '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert_eq!(hash, "9962700875b2bd159353aab20cba819a326310d9");
}

#[test]
fn csi_version_maps_follow_minor_version_and_provider() {
    let addons: Vec<Addon> = load_addons(&fixtures())
        .unwrap()
        .into_iter()
        .filter(|a| a.name == "csi")
        .collect();
    let matrix = Matrix {
        versions: vec![v("1.33.0"), v("1.34.2"), v("1.36.3")],
        providers: vec!["aws".into(), "openstack".into(), "azure".into()],
        cnis: vec![cni("canal", "v3.31"), cni("none", "")],
    };
    let r = render_addons(&addons, &matrix).unwrap();
    assert_eq!(
        images_of(&r, "csi"),
        set(&[
            "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.33.9",
            "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.34.8",
            "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.35.7",
            "mcr.microsoft.com/oss/v2/kubernetes-csi/livenessprobe:v2.19.0",
            "registry.k8s.io/provider-os/cinder-csi-plugin:v1.33.1",
            "registry.k8s.io/provider-os/cinder-csi-plugin:v1.34.1",
            "registry.k8s.io/sig-storage/csi-attacher:v4.10.0",
        ])
    );
    // CNI is never read: 3 providers × 3 versions at most, and aws reads no version at all.
    assert!(r[0].renders <= 7, "renders = {}", r[0].renders);
    let azure_new: Vec<&String> = r[0]
        .outputs
        .iter()
        .filter(|o| o.contains("--enable-new-flag"))
        .collect();
    assert!(!azure_new.is_empty() && azure_new.iter().all(|o| !o.contains("v1.33.9")));
}

#[test]
fn cni_conditions_select_per_cni_images() {
    let addons: Vec<Addon> = load_addons(&fixtures())
        .unwrap()
        .into_iter()
        .filter(|a| a.name == "canal" || a.name == "hubble")
        .collect();
    let matrix = Matrix {
        versions: vec![v("1.34.1")],
        providers: vec!["aws".into()],
        cnis: vec![
            cni("canal", "v3.30"),
            cni("canal", "v3.29"),
            cni("cilium", "1.13.4"),
            cni("cilium", "1.19.4"),
            cni("none", ""),
        ],
    };
    let r = render_addons(&addons, &matrix).unwrap();
    assert_eq!(
        images_of(&r, "canal"),
        set(&[
            "docker.io/flannel/flannel:v0.24.4",
            "quay.io/calico/cni:v3.30.5",
            "quay.io/calico/node:v3.30.5"
        ])
    );
    assert_eq!(
        images_of(&r, "hubble"),
        set(&[
            "quay.io/cilium/hubble-relay:v1.12.13@sha256:9b7fc17534514342b12ee9a7ed05084d1f933028d778eb5173c7f0f0aa494414",
            "quay.io/cilium/hubble-ui-backend:v0.11.0",
            "quay.io/cilium/hubble-ui:v0.11.0",
        ])
    );
    let canal_out = r.iter().find(|x| x.name == "canal").unwrap();
    let with_pool = canal_out
        .outputs
        .iter()
        .find(|o| o.contains("CALICO_IPV4POOL_CIDR"))
        .unwrap();
    assert!(with_pool.contains("value: \"172.25.0.0/16\""));
    assert!(
        !with_pool.contains("IPv6Network"),
        "DualStack is false in KKP's mock cluster"
    );
}

#[test]
fn external_ccm_feature_and_range_with_define_addons() {
    let addons: Vec<Addon> = load_addons(&fixtures())
        .unwrap()
        .into_iter()
        .filter(|a| a.name == "cloud-node-manager" || a.name == "kubevirt-csi")
        .collect();
    let matrix = Matrix {
        versions: vec![v("1.33.5"), v("1.34.1"), v("1.35.0")],
        providers: vec!["azure".into(), "aws".into(), "kubevirt".into()],
        cnis: vec![cni("none", "")],
    };
    let r = render_addons(&addons, &matrix).unwrap();
    assert_eq!(
        images_of(&r, "cloud-node-manager"),
        set(&[
            "mcr.microsoft.com/oss/v2/kubernetes/azure-cloud-node-manager:v1.33.3",
            "mcr.microsoft.com/oss/v2/kubernetes/azure-cloud-node-manager:v1.34.2"
        ])
    );
    assert_eq!(
        images_of(&r, "kubevirt-csi"),
        set(&[
            "quay.io/kubermatic/kubevirt-csi-driver-operator:v0.5.3",
            "registry.k8s.io/sig-storage/snapshot-controller:v6.3.1"
        ])
    );
    let kv = r.iter().find(|x| x.name == "kubevirt-csi").unwrap();
    let text = kv
        .outputs
        .iter()
        .find(|o| o.contains("kind: Deployment"))
        .unwrap();
    assert!(text.contains("    project-id: \"project\"\n"), "{text}");
    assert!(
        text.contains("   []"),
        "range else over no storage classes: {text}"
    );
    // The kubevirt addon reads the version nowhere: one render per provider.
    assert_eq!(kv.renders, 3);
}

#[test]
fn whole_default_matrix_over_the_fixtures() {
    let addons = load_addons(&fixtures()).unwrap();
    let matrix = default_matrix();
    assert_eq!(
        matrix.versions.len() * matrix.providers.len() * matrix.cnis.len(),
        18_600
    );
    let start = std::time::Instant::now();
    let r = render_addons(&addons, &matrix).unwrap();
    let elapsed = start.elapsed();
    let renders: usize = r.iter().map(|x| x.renders).sum();
    eprintln!(
        "default matrix: {} addons × 18600 combinations, {renders} renders, {elapsed:?}",
        r.len()
    );
    let all: BTreeSet<String> = r
        .iter()
        .flat_map(|x| x.outputs.iter().flat_map(|o| images_in(o)))
        .collect();
    let mut want: BTreeSet<String> = matrix
        .versions
        .iter()
        .map(|v| format!("registry.k8s.io/kube-proxy:v{v}"))
        .collect();
    want.extend(set(&[
        "docker.io/flannel/flannel:v0.24.4",
        "quay.io/calico/cni:v3.30.5",
        "quay.io/calico/node:v3.30.5",
        "quay.io/calico/cni:v3.31.3",
        "quay.io/calico/node:v3.31.3",
        "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.33.9",
        "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.34.8",
        "mcr.microsoft.com/oss/v2/kubernetes-csi/azurefile-csi:v1.35.7",
        "mcr.microsoft.com/oss/v2/kubernetes-csi/livenessprobe:v2.19.0",
        "registry.k8s.io/provider-os/cinder-csi-plugin:v1.33.1",
        "registry.k8s.io/provider-os/cinder-csi-plugin:v1.34.1",
        "registry.k8s.io/provider-os/cinder-csi-plugin:v1.35.0",
        "registry.k8s.io/sig-storage/csi-attacher:v4.10.0",
        "quay.io/cilium/hubble-relay:v1.12.13@sha256:9b7fc17534514342b12ee9a7ed05084d1f933028d778eb5173c7f0f0aa494414",
        "quay.io/cilium/hubble-ui-backend:v0.11.0",
        "quay.io/cilium/hubble-ui:v0.11.0",
        "mcr.microsoft.com/oss/v2/kubernetes/azure-cloud-node-manager:v1.33.3",
        "mcr.microsoft.com/oss/v2/kubernetes/azure-cloud-node-manager:v1.34.2",
        "quay.io/kubermatic/kubevirt-csi-driver-operator:v0.5.3",
        "registry.k8s.io/sig-storage/snapshot-controller:v6.3.1",
    ]));
    assert_eq!(all, want);
    // Memoisation: far fewer renders than 7 addons × 18600.
    assert!(renders < 1_000, "renders = {renders}");
}

#[test]
fn render_failures_name_addon_file_line_and_combination() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("broken");
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("a.yaml"), "kind: A\n").unwrap();
    fs::write(
        a.join("b.yaml"),
        "kind: B\n{{ if eq .Cluster.CloudProviderName \"gcp\" }}\nimage: {{ Image \"Bad/Upper:1\" }}\n{{ end }}\n",
    )
    .unwrap();
    let addons = load_addons(tmp.path()).unwrap();
    let matrix = Matrix {
        versions: vec![v("1.34.1")],
        providers: vec!["aws".into(), "gcp".into()],
        cnis: vec![cni("none", "")],
    };
    let e = render_addons(&addons, &matrix).unwrap_err();
    match &e {
        AddonError::Render {
            addon,
            file,
            line,
            combination,
            message,
        } => {
            assert_eq!((addon.as_str(), file.as_str(), *line), ("broken", "b.yaml", 3));
            assert!(combination.contains("provider gcp"), "{combination}");
            assert!(message.contains("Image"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().starts_with("addon broken: b.yaml:3: "), "{e}");

    fs::write(a.join("b.yaml"), "kind: B\n\n{{ toYaml .Cluster }}\n").unwrap();
    match load_addons(tmp.path()).unwrap_err() {
        AddonError::Parse {
            addon,
            file,
            line,
            message,
        } => {
            assert_eq!((addon.as_str(), file.as_str(), line), ("broken", "b.yaml", 3));
            assert!(message.contains("\"toYaml\" not defined"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn kkp_functions_behave_like_kkp() {
    assert_eq!(normalise_image("nginx").unwrap(), "docker.io/library/nginx");
    assert_eq!(
        normalise_image(
            "quay.io/a/b:1@sha256:abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0"
        )
        .unwrap(),
        "quay.io/a/b:1@sha256:abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0abc0"
    );
    assert_eq!(normalise_image("localhost:5000/x").unwrap(), "localhost:5000/x");
    assert!(normalise_image("Bad/Upper").is_err());
    let f = Arc::new(addon_funcs());
    let t = Template::parse(
        "t",
        r#"{{ semverCompare .Cluster.Version ">= 1.33" }} {{ semverCompare "junk" ">= 1" }} {{ join .Cluster.Network.ServiceCIDRBlocks ";" }} {{ .Cluster.Features.Has "externalCloudProvider" }} {{ .Cluster.Features.Has "etcdLauncher" }}"#,
        f,
    )
    .unwrap();
    let d = template_data(&v("1.34.2"), "vsphere", &cni("canal", "v3.31"));
    assert_eq!(t.render(&d).unwrap(), "true false 10.10.10.0/24 true true");
    let d = template_data(&v("1.34.2"), "aws", &cni("canal", "v3.31"));
    assert_eq!(t.render(&d).unwrap(), "true false 10.10.10.0/24 false true");
}

#[test]
fn sources_are_repeated_for_every_document() {
    let text = "# Source: a/x.yaml\nkind: A\n---\nkind: B\n\n---\n\n# Source: a/y.yaml\nkind: C\n";
    assert_eq!(
        annotate_sources(text),
        "# Source: a/x.yaml\nkind: A\n---\n# Source: a/x.yaml\nkind: B\n\n---\n# Source: a/x.yaml\n\n# Source: a/y.yaml\nkind: C\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Image layer extraction

enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn layer(entries: &[E<'_>], gzip: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        match e {
            E::File(p, c) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(c.len() as u64);
                h.set_mode(0o644);
                set_raw_path(&mut h, p);
                h.set_cksum();
                b.append(&h, c.as_bytes()).unwrap();
            }
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                set_raw_path(&mut h, p);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                set_raw_path(&mut h, p);
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    let raw = b.into_inner().unwrap();
    if !gzip {
        return raw;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// Writes the name bytes directly, so tests can build hostile paths `set_path` would refuse.
fn set_raw_path(h: &mut tar::Header, p: &str) {
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..p.len()].copy_from_slice(p.as_bytes());
}

fn tree(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(base: &Path, d: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &p, out);
            } else if m.file_type().is_symlink() {
                out.insert(format!("{rel} -> link"));
            } else {
                out.insert(format!("{rel}={}", fs::read_to_string(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn extracts_only_addons_and_applies_whiteouts_across_layers() {
    let l1 = layer(
        &[
            E::Dir("addons/"),
            E::File("addons/a/x.yaml", "x1"),
            E::File("addons/a/old.yaml", "old"),
            E::File("addons/b/y.yaml", "y1"),
            E::File("addons/c/z.yaml", "z1"),
            E::File("etc/passwd", "root"),
            E::File("./addons/d/w.yaml", "w1"),
        ],
        true,
    );
    let l2 = layer(
        &[
            E::File("addons/a/.wh.old.yaml", ""),
            E::File("addons/a/x.yaml", "x2"),
            // Opaque after a same-layer file: only lower layers' content goes.
            E::File("addons/b/new.yaml", "n2"),
            E::File("addons/b/.wh..wh..opq", ""),
            E::File("addons/.wh.c", ""),
            E::Link("addons/d/link.yaml", "/etc/passwd"),
        ],
        false,
    );
    let tmp = tempfile::tempdir().unwrap();
    let stats =
        extract_addons_from_layers([l1, l2].into_iter().map(std::io::Cursor::new), tmp.path()).unwrap();
    assert_eq!(
        tree(tmp.path()),
        set(&[
            "addons/",
            "addons/a/",
            "addons/a/x.yaml=x2",
            "addons/b/",
            "addons/b/new.yaml=n2",
            "addons/d/",
            "addons/d/w.yaml=w1",
        ])
    );
    assert_eq!(stats.skipped_links, 1);
    assert_eq!(stats.whiteouts, 3);
    // The extracted tree loads as addons.
    let addons = load_addons(&tmp.path().join("addons")).unwrap();
    assert_eq!(
        addons.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "d"]
    );
}

#[test]
fn refuses_path_escapes_and_handles_root_whiteouts() {
    for bad in ["addons/../../escape.yaml", "/addons/abs.yaml", "../x"] {
        let tmp = tempfile::tempdir().unwrap();
        let l = layer(&[E::File(bad, "boom")], false);
        let e = extract_addons_from_layers(std::iter::once(std::io::Cursor::new(l)), &tmp.path().join("d"))
            .unwrap_err();
        assert!(matches!(e, AddonError::Extract { layer: 0, .. }), "{bad}: {e}");
        assert!(e.to_string().contains("escapes"), "{e}");
        assert!(!tmp.path().join("escape.yaml").exists());
    }
    let tmp = tempfile::tempdir().unwrap();
    let l1 = layer(&[E::File("addons/a/x.yaml", "1")], false);
    let l2 = layer(
        &[E::File(".wh..wh..opq", ""), E::File("addons/b/y.yaml", "2")],
        false,
    );
    extract_addons_from_layers([l1, l2].into_iter().map(std::io::Cursor::new), tmp.path()).unwrap();
    assert_eq!(
        tree(tmp.path()),
        set(&["addons/", "addons/b/", "addons/b/y.yaml=2"])
    );
}

/// Manual check against a real KKP `addons/` tree (not shipped with the repo):
/// `KKP_ADDONS_DIR=/path/to/kubermatic/addons cargo test -p kkp-shared --release --lib real_kkp -- --ignored --nocapture`
#[test]
#[ignore = "needs KKP_ADDONS_DIR pointing at a KKP addons checkout"]
fn real_kkp_addons_render_over_the_default_matrix() {
    let dir = std::env::var_os("KKP_ADDONS_DIR").expect("set KKP_ADDONS_DIR");
    let start = std::time::Instant::now();
    let addons = load_addons(Path::new(&dir)).unwrap();
    let loaded = start.elapsed();
    let r = render_addons(&addons, &default_matrix()).unwrap();
    let renders: usize = r.iter().map(|x| x.renders).sum();
    let all: BTreeSet<String> = r
        .iter()
        .flat_map(|x| x.outputs.iter().flat_map(|o| images_in(o)))
        .collect();
    for x in &r {
        eprintln!(
            "{:32} renders {:5} distinct {:4}",
            x.name,
            x.renders,
            x.outputs.len()
        );
    }
    eprintln!(
        "{} addons loaded in {loaded:?}; {renders} renders, {} images, total {:?}",
        addons.len(),
        all.len(),
        start.elapsed()
    );
    for i in &all {
        eprintln!("  {i}");
    }
    assert!(
        all.iter()
            .any(|i| i.starts_with("registry.k8s.io/kube-proxy:v1.36.3"))
    );
}

#[test]
fn memoised_outcomes_equal_direct_renders() {
    let addons = load_addons(&fixtures()).unwrap();
    let m = default_matrix();
    let base = DataBase::new();
    for addon in &addons {
        let mut memo: Memo<String> = Memo::default();
        let mut checked = 0;
        for (n, version) in m.versions.iter().enumerate() {
            for (p, provider) in m.providers.iter().enumerate() {
                for (c, cni) in m.cnis.iter().enumerate() {
                    let external = EXTERNAL_CCM_PROVIDERS.contains(&provider.as_str()) || p % 2 == 0;
                    let data = base.data(version, provider, cni, external, provider == "vsphere");
                    let got = match memo.lookup(&data) {
                        Some(o) => o.clone(),
                        None => {
                            let (res, trace) = addon.template.render_traced(&data);
                            let o = res.unwrap();
                            memo.insert(&trace, o.clone());
                            o
                        }
                    };
                    // Check a spread of cells against a fresh, unmemoised render.
                    if (n * 7 + p * 3 + c) % 11 == 0 {
                        assert_eq!(
                            got,
                            addon.template.render(&data).unwrap(),
                            "{} {version} {provider} {cni:?}",
                            addon.name
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000, "{checked}");
    }
}

/// Addons that only render for an AWS cluster with the external CCM (the EBS CSI driver) or a vSphere
/// cluster under CSI migration are rendered too, although KKP's own tool never builds such clusters.
#[test]
fn external_ccm_and_csi_migration_variants_are_rendered() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("csi");
    fs::create_dir_all(&a).unwrap();
    fs::write(
        a.join("ebs.yaml"),
        "{{ if eq .Cluster.CloudProviderName \"aws\" }}{{ if .Cluster.Features.Has \"externalCloudProvider\" }}\n\
         kind: Pod\nspec:\n  containers:\n  - image: '{{ Image \"public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.60.1\" }}'\n\
         {{ end }}{{ end }}\n",
    )
    .unwrap();
    fs::write(
        a.join("webhook.yaml"),
        "{{ if eq .Cluster.CloudProviderName \"vsphere\" }}{{ if .Cluster.CSIMigration }}\n\
         kind: Pod\nspec:\n  containers:\n  - image: '{{ Image \"quay.io/kubermatic/mirror/syncer:v3.1.2\" }}'\n\
         {{ end }}{{ end }}\n",
    )
    .unwrap();
    let addons = load_addons(tmp.path()).unwrap();
    let matrix = Matrix {
        versions: vec![v("1.34.1")],
        providers: vec!["aws".into(), "vsphere".into(), "hetzner".into()],
        cnis: vec![cni("none", "")],
    };
    let r = render_addons(&addons, &matrix).unwrap();
    assert_eq!(
        images_of(&r, "csi"),
        set(&[
            "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.60.1",
            "quay.io/kubermatic/mirror/syncer:v3.1.2"
        ])
    );
    // aws with and without the external CCM, vsphere with and without CSI migration, hetzner once.
    assert_eq!(r[0].combinations, 5);
}
