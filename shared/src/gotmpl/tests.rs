use std::sync::Arc;

use super::*;

fn funcs() -> Arc<Funcs> {
    Arc::new(Funcs::sprig())
}

fn data() -> Value {
    Value::structure(
        "TemplateData",
        vec![
            (
                "Cluster",
                Value::structure(
                    "ClusterData",
                    vec![
                        ("Name", Value::from("abc")),
                        ("CloudProviderName", Value::from("openstack")),
                        (
                            "Version",
                            Value::Version(Arc::new(parse_version("1.33.2").unwrap())),
                        ),
                        ("MajorMinorVersion", Value::from("1.33")),
                        ("Features", Value::set(["externalCloudProvider"])),
                        ("PodCIDRBlocks", Value::str_list(["172.25.0.0/16", "fd00::/104"])),
                        (
                            "Labels",
                            Value::map([("a", Value::from("1")), ("b", Value::from("2"))]),
                        ),
                        ("Empty", Value::str_list(Vec::<String>::new())),
                    ],
                ),
            ),
            ("Variables", Value::map(Vec::<(String, Value)>::new())),
        ],
    )
    .rooted()
}

fn render(t: &str) -> String {
    Template::parse("t.yaml", t, funcs())
        .unwrap_or_else(|e| panic!("parse {t:?}: {e}"))
        .render(&data())
        .unwrap_or_else(|e| panic!("render {t:?}: {e}"))
}

fn render_err(t: &str) -> TemplateError {
    match Template::parse("t.yaml", t, funcs()) {
        Err(e) => e,
        Ok(tpl) => tpl.render(&data()).expect_err("expected an error"),
    }
}

#[test]
fn text_fields_and_printing() {
    assert_eq!(render("a {{ .Cluster.Name }} b"), "a abc b");
    assert_eq!(render("{{ .Cluster.Version }}"), "1.33.2");
    assert_eq!(
        render("{{ .Cluster.PodCIDRBlocks }}"),
        "[172.25.0.0/16 fd00::/104]"
    );
    assert_eq!(render("{{ .Cluster.Labels }}"), "map[a:1 b:2]");
    assert_eq!(render("{{ .Variables.missing }}"), "<no value>");
    assert_eq!(
        render("{{ 3 }} {{ -2 }} {{ 1.5 }} {{ 0x10 }} {{ 'a' }} {{ true }} {{ `r\\n` }}"),
        "3 -2 1.5 16 97 true r\\n"
    );
    assert_eq!(render("{{ \"q\\\"x\\n\" }}"), "q\"x\n");
}

#[test]
fn trim_markers_and_comments() {
    assert_eq!(render("a  \n {{- \"x\" -}} \n  b"), "axb");
    assert_eq!(render("a {{/* gone */}} b"), "a  b");
    assert_eq!(render("a \n{{- /* gone */ -}}\n b"), "ab");
    assert_eq!(render("{{ -1 }}"), "-1");
}

#[test]
fn print_spacing_matches_go() {
    assert_eq!(
        render(r#"{{ print "registry.k8s.io/kube-proxy:v" .Cluster.Version }}"#),
        "registry.k8s.io/kube-proxy:v1.33.2"
    );
    assert_eq!(
        render("{{ print 1 2 }}|{{ print \"a\" \"b\" }}|{{ print 1 \"a\" 2 }}"),
        "1 2|ab|1a2"
    );
    assert_eq!(
        render(r#"{{ printf "%s-%d-%q-%05d-%v" "a" 3 "b" 42 .Cluster.Version }}"#),
        "a-3-\"b\"-00042-1.33.2"
    );
    assert_eq!(render(r#"{{ println "a" 1 }}"#), "a 1\n");
}

#[test]
fn conditionals_and_kkp_version_map() {
    let t = r#"{{ $version := "UNSUPPORTED" }}
{{- if eq .Cluster.MajorMinorVersion "1.32" }}{{ $version = "v1.32.1" }}{{ end }}
{{- if eq .Cluster.MajorMinorVersion "1.33" }}{{ $version = "v1.33.1" }}{{ end }}
{{- if not (eq $version "UNSUPPORTED") }}image: {{ print "cinder:" $version }}{{ end }}"#;
    assert_eq!(render(t), "image: cinder:v1.33.1");
    assert_eq!(
        render(
            r#"{{ if eq .Cluster.CloudProviderName "aws" }}A{{ else if eq .Cluster.CloudProviderName "openstack" }}O{{ else }}X{{ end }}"#
        ),
        "O"
    );
    assert_eq!(
        render(
            r#"{{ if .Cluster.Features.Has "externalCloudProvider" }}ext{{ end }}{{ if .Cluster.Features.Has "nope" }}no{{ end }}"#
        ),
        "ext"
    );
    assert_eq!(
        render(
            r#"{{ if and (eq 1 1) (ne "a" "b") }}y{{ end }}{{ if or false .Cluster.Empty }}n{{ else }}e{{ end }}"#
        ),
        "ye"
    );
    assert_eq!(
        render(r#"{{ if semverCompare ">= 1.33" "1.33.2" }}new{{ end }}"#),
        "new"
    );
    assert_eq!(render("{{ or 0 \"\" \"x\" }}|{{ and 1 0 2 }}"), "x|0");
    assert_eq!(
        render("{{ eq .Cluster.CloudProviderName \"aws\" \"openstack\" }}"),
        "true"
    );
    assert_eq!(render("{{ lt 1 2 }} {{ ge \"b\" \"a\" }}"), "true true");
}

#[test]
fn variable_scoping_follows_go() {
    // A variable declared inside if is gone after end; assignment reaches the outer one.
    assert_eq!(
        render("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}"),
        "21"
    );
    assert_eq!(
        render("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    let e = render_err("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}");
    assert!(e.message.contains("undefined variable \"$y\""), "{e}");
    assert_eq!(
        render("{{ $.Cluster.Name }}{{ with .Cluster }}{{ $.Cluster.Name }}{{ .Name }}{{ end }}"),
        "abcabcabc"
    );
}

#[test]
fn range_with_define_template_block() {
    assert_eq!(
        render("{{ range .Cluster.PodCIDRBlocks }}[{{ . }}]{{ end }}"),
        "[172.25.0.0/16][fd00::/104]"
    );
    assert_eq!(
        render("{{ range $i, $v := .Cluster.PodCIDRBlocks }}{{ $i }}={{ $v }};{{ end }}"),
        "0=172.25.0.0/16;1=fd00::/104;"
    );
    assert_eq!(
        render("{{ range $k, $v := .Cluster.Labels }}{{ $k }}{{ $v }}{{ end }}"),
        "a1b2"
    );
    assert_eq!(
        render("{{ range .Cluster.Empty }}x{{ else }}none{{ end }}"),
        "none"
    );
    assert_eq!(
        render(
            "{{ range list 1 2 3 4 }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}"
        ),
        "13"
    );
    assert_eq!(render("{{ with .Variables.none }}x{{ else }}y{{ end }}"), "y");
    assert_eq!(
        render(r#"{{ define "img" }}image: {{ . }}{{ end }}{{ template "img" "nginx" }}"#),
        "image: nginx"
    );
    assert_eq!(render(r#"{{ block "b" .Cluster }}{{ .Name }}{{ end }}"#), "abc");
    assert_eq!(
        render("{{ range $i, $e := list \"a\" }}{{ $e }}{{ end }}{{ range 2 }}{{ . }}{{ end }}"),
        "a01"
    );
}

#[test]
fn sprig_functions() {
    assert_eq!(render(r#"{{ default "xfs" .Variables.fs | quote }}"#), "\"xfs\"");
    assert_eq!(
        render(r#"{{ default "xfs" "ext4" }} {{ "a" | squote }} {{ "hi" | b64enc }} {{ "aGk=" | b64dec }}"#),
        "ext4 'a' aGk= hi"
    );
    assert_eq!(
        render(r#"{{ first .Cluster.PodCIDRBlocks }} {{ last .Cluster.PodCIDRBlocks }}"#),
        "172.25.0.0/16 fd00::/104"
    );
    assert_eq!(
        render(
            r#"{{ hasPrefix "1.13" "1.13.4" }} {{ hasSuffix "x" "ax" }} {{ trimPrefix "v" "v1" }} {{ trimSuffix "-x" "a-x" }} {{ contains "b" "abc" }}"#
        ),
        "true true 1 a true"
    );
    assert_eq!(
        render(r#"{{ replace "a" "b" "aXa" }} {{ lower "AB" }} {{ upper "ab" }} {{ trim "  x " }}"#),
        "bXb ab AB x"
    );
    assert_eq!(
        render(r#"{{ (split "," "a,b")._1 }} {{ join "," (list "a" "b") }}"#),
        "b a,b"
    );
    assert_eq!(
        render(r#"{{ toJson (dict "a" 1 "b" (list "x<")) }}"#),
        r#"{"a":1,"b":["x\u003c"]}"#
    );
    assert_eq!(
        render(
            r#"{{ has "b" (list "a" "b") }} {{ empty "" }} {{ empty .Cluster }} {{ ternary "y" "n" true }}"#
        ),
        "true true false y"
    );
    assert_eq!(
        render(r#"{{ int "12" }} {{ toString 5 }} {{ "a\nb" | indent 2 }}{{ "c" | nindent 1 }}"#),
        "12 5   a\n  b\n c"
    );
    assert_eq!(
        render(r#"{{ (semver "v1.2.3").Minor }} {{ semverCompare "~1.33" .Cluster.Version }}"#),
        "2 true"
    );
    assert_eq!(
        render(
            r#"{{ index .Cluster.Labels "b" }} {{ index .Cluster.PodCIDRBlocks 1 }} {{ len .Cluster.PodCIDRBlocks }} {{ slice "abcd" 1 3 }}"#
        ),
        "2 fd00::/104 2 bc"
    );
    assert_eq!(
        render(r#"{{ html "<a>" }} {{ urlquery "a b&" }} {{ js "it's" }}"#),
        "&lt;a&gt; a+b%26 it\\'s"
    );
}

#[test]
fn errors_name_file_and_line() {
    let e = render_err("a\nb\n{{ nosuchfunc 1 }}");
    assert_eq!((e.file.as_str(), e.line), ("t.yaml", 3));
    assert!(e.message.contains("function \"nosuchfunc\" not defined"), "{e}");
    let e = render_err("x\n{{ .Cluster.Nope }}");
    assert_eq!(e.line, 2);
    assert!(
        e.message
            .contains("can't evaluate field Nope in type ClusterData"),
        "{e}"
    );
    assert!(render_err("{{ if true }}").message.contains("{{end}}"));
    assert!(render_err("{{ end }}").message.contains("unexpected {{end}}"));
    assert!(render_err("{{ \"a\" 1 }}").message.contains("non-function"));
    assert!(
        render_err("{{ eq 1 \"a\" }}")
            .message
            .contains("incompatible types")
    );
    assert!(
        render_err("{{ template \"x\" }}")
            .message
            .contains("no such template")
    );
    assert!(
        render_err("{{ \"unterminated }}")
            .message
            .contains("unterminated")
    );
}

#[test]
fn multi_file_errors_and_markers() {
    let files = vec![
        ("a.yaml".to_string(), "kind: A\n".to_string()),
        (
            "dir/b.yaml".to_string(),
            "kind: B\n\n{{ .Cluster.Nope }}\n".to_string(),
        ),
    ];
    let e = Template::parse_files(&files, "\n\n---\n\n", funcs(), |n| format!("# Source: {n}\n"))
        .unwrap()
        .render(&data())
        .unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("dir/b.yaml", 3));
    // A file unbalanced on its own is refused even if the next file would close it.
    let files = vec![
        ("a.yaml".to_string(), "{{ if true }}".to_string()),
        ("b.yaml".to_string(), "{{ end }}".to_string()),
    ];
    let e = Template::parse_files(&files, "\n---\n", funcs(), |_| String::new()).unwrap_err();
    assert_eq!(e.file, "a.yaml");
    // Markers are placed where each file's output begins, even after trimmed text.
    let files = vec![
        ("a.yaml".to_string(), "kind: A".to_string()),
        ("b.yaml".to_string(), "{{- if true }}kind: B{{ end }}".to_string()),
    ];
    let out = Template::parse_files(&files, "\n\n---\n\n", funcs(), |n| format!("# Source: {n}\n"))
        .unwrap()
        .render(&data())
        .unwrap();
    assert_eq!(
        out,
        "# Source: a.yaml\nkind: A\n\n---\n# Source: b.yaml\nkind: B\n\n---\n\n"
    );
}

#[test]
fn memo_reuses_renders_that_read_the_same_values() {
    let t = Template::parse(
        "t",
        r#"{{ if eq .Cluster.CloudProviderName "openstack" }}{{ .Cluster.Version }}{{ else }}static{{ end }}"#,
        funcs(),
    )
    .unwrap();
    let mk = |provider: &str, version: &str| {
        Value::structure(
            "TemplateData",
            vec![(
                "Cluster",
                Value::structure(
                    "ClusterData",
                    vec![
                        ("CloudProviderName", Value::from(provider)),
                        (
                            "Version",
                            Value::Version(Arc::new(parse_version(version).unwrap())),
                        ),
                    ],
                ),
            )],
        )
        .rooted()
    };
    let mut memo: Memo<String> = Memo::default();
    let mut renders = 0;
    let mut outs = Vec::new();
    for p in ["aws", "openstack", "gcp"] {
        for v in ["1.33.1", "1.33.2", "1.34.0"] {
            let d = mk(p, v);
            let out = match memo.lookup(&d) {
                Some(o) => o.clone(),
                None => {
                    renders += 1;
                    let (res, trace) = t.render_traced(&d);
                    let o = res.unwrap();
                    memo.insert(&trace, o.clone());
                    o
                }
            };
            assert_eq!(out, t.render(&d).unwrap());
            outs.push(out);
        }
    }
    // aws/gcp depend only on the provider: 1 render each; openstack: one per version.
    assert_eq!(renders, 5);
    assert_eq!(outs[3..6], ["1.33.1", "1.33.2", "1.34.0"]);
}

#[test]
fn typed_maps_else_with_chains_and_short_circuit() {
    let zero = Value::structure(
        "IPAMAllocation",
        vec![("Type", Value::from("")), ("CIDR", Value::from(""))],
    );
    let d = Value::structure(
        "D",
        vec![(
            "Allocs",
            Value::TypedMap(Arc::new(TypedMap {
                type_name: "map[string]IPAMAllocation".into(),
                entries: [(
                    "v4".to_string(),
                    Value::structure(
                        "IPAMAllocation",
                        vec![
                            ("Type", Value::from("prefix")),
                            ("CIDR", Value::from("10.0.0.0/8")),
                        ],
                    ),
                )]
                .into_iter()
                .collect(),
                zero,
            })),
        )],
    )
    .rooted();
    let r = |t: &str| Template::parse("t", t, funcs()).unwrap().render(&d).unwrap();
    // A missing key of a typed map is the zero struct, and structs are always true (as in Go).
    assert_eq!(
        r("{{ if .Allocs.missing }}zero:{{ .Allocs.missing.Type | quote }}{{ end }}"),
        "zero:\"\""
    );
    assert_eq!(
        r(r#"{{ (index .Allocs "v4").CIDR }} {{ $a := .Allocs.v4 }}{{ $a.Type }}"#),
        "10.0.0.0/8 prefix"
    );
    assert_eq!(
        r(r#"{{ with eq .Allocs.v4.CIDR "x" }}no{{ else with .Allocs.v4.Type }}{{ . }}{{ end }}"#),
        "prefix"
    );
    // `and`/`or` stop at the first deciding operand, like Go 1.18+.
    assert_eq!(
        r(r#"{{ and false (index .Allocs.v4 1) }}|{{ or true (index .Allocs.v4 1) }}"#),
        "false|true"
    );
}
