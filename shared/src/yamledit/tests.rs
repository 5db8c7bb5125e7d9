use super::*;
use proptest::prelude::*;

fn p(s: &str) -> YamlPath {
    YamlPath::parse(s).unwrap()
}

/// Sets `path` and checks the result text and that only that path changed.
fn set(text: &str, path: &str, value: &str) -> String {
    let mut d = YamlDoc::parse(text).unwrap();
    d.set(0, &p(path), value).unwrap();
    let out = d.into_text();
    verify_edits(
        text,
        &out,
        &[Intended {
            doc: 0,
            path: p(path),
            value: Scalar::Str(value.into()),
        }],
    )
    .unwrap();
    out
}

#[test]
fn path_notation_round_trips() {
    for s in [
        "a.b.c",
        "dex.image.repository",
        "a[0].image",
        "\"a.b\".c",
        "x[2][3].y",
    ] {
        assert_eq!(p(s).to_string(), s);
    }
    assert_eq!(
        p("a[1].b").0,
        vec![Seg::Key("a".into()), Seg::Index(1), Seg::Key("b".into())]
    );
    assert!(YamlPath::parse("a..b").is_err());
    assert!(YamlPath::parse("").is_err());
    assert!(YamlPath::parse("a.").is_err());
    assert!(YamlPath::parse("a[1").is_err());
    assert!(YamlPath::parse("a[x]").is_err());
}

#[test]
fn splice_keeps_style_and_comments() {
    let src = "# head\na:\n  b: \"dq\"   # c\n  c: 'sq'  # d\n  e: plain # e\n\nf: x\n";
    assert_eq!(
        set(src, "a.b", "r/x"),
        "# head\na:\n  b: \"r/x\"   # c\n  c: 'sq'  # d\n  e: plain # e\n\nf: x\n"
    );
    assert_eq!(
        set(src, "a.c", "it's"),
        "# head\na:\n  b: \"dq\"   # c\n  c: 'it''s'  # d\n  e: plain # e\n\nf: x\n"
    );
    assert_eq!(
        set(src, "a.e", "reg:5000/a"),
        "# head\na:\n  b: \"dq\"   # c\n  c: 'sq'  # d\n  e: reg:5000/a # e\n\nf: x\n"
    );
    // A plain scalar that would not read back as a string gets double quotes.
    assert_eq!(
        set(src, "a.e", "true"),
        "# head\na:\n  b: \"dq\"   # c\n  c: 'sq'  # d\n  e: \"true\" # e\n\nf: x\n"
    );
    assert_eq!(
        set(src, "a.e", "x # y"),
        "# head\na:\n  b: \"dq\"   # c\n  c: 'sq'  # d\n  e: \"x # y\" # e\n\nf: x\n"
    );
}

#[test]
fn unchanged_value_is_no_edit() {
    let src = "a: 'v'\n";
    let mut d = YamlDoc::parse(src).unwrap();
    assert!(!d.set(0, &p("a"), "v").unwrap());
    assert_eq!(d.text(), src);
}

#[test]
fn multi_line_quoted_scalar_is_replaced_whole() {
    let src = "a: \"one\n  two\"\nb: 1\n";
    assert_eq!(set(src, "a", "x"), "a: \"x\"\nb: 1\n");
}

#[test]
fn crlf_and_bom_are_kept() {
    let src = "\u{feff}spec:\r\n  api:\r\n    dockerRepository: quay.io/x # c\r\n";
    assert_eq!(
        set(src, "spec.api.dockerRepository", "r/x"),
        "\u{feff}spec:\r\n  api:\r\n    dockerRepository: r/x # c\r\n"
    );
    assert_eq!(
        set(src, "spec.ui.dockerRepository", "r/y"),
        "\u{feff}spec:\r\n  api:\r\n    dockerRepository: quay.io/x # c\r\n  ui:\r\n    dockerRepository: r/y\r\n"
    );
}

#[test]
fn insert_at_end_of_parent_with_its_indentation() {
    let src = "spec:\n    api:\n        dockerTag: v1 # keep\n    # trailing comment\nother: 1\n";
    assert_eq!(
        set(src, "spec.api.dockerRepository", "r/a"),
        "spec:\n    api:\n        dockerTag: v1 # keep\n        dockerRepository: r/a\n    # trailing comment\nother: 1\n"
    );
    // Missing parents are created, with the file's own indentation step (4 here).
    assert_eq!(
        set(src, "spec.userCluster.addons.dockerRepository", "r/b"),
        "spec:\n    api:\n        dockerTag: v1 # keep\n    userCluster:\n        addons:\n            dockerRepository: r/b\n    # trailing comment\nother: 1\n"
    );
}

#[test]
fn insert_into_mapping_in_sequence_and_after_block_scalar() {
    let src = "- name: a\n  script: |\n    echo\n\n- name: b\n";
    assert_eq!(
        set(src, "[0].image", "r/i"),
        "- name: a\n  script: |\n    echo\n\n  image: r/i\n- name: b\n"
    );
}

#[test]
fn insert_under_null_value() {
    assert_eq!(set("a:\nb: 1\n", "a.x", "v"), "a:\n  x: v\nb: 1\n");
    assert_eq!(set("a: ~ # c\nb: 1\n", "a.x", "v"), "a: # c\n  x: v\nb: 1\n");
    assert_eq!(set("a:\n  b:\n", "a.b.c", "v"), "a:\n  b:\n    c: v\n");
}

#[test]
fn insert_under_empty_flow_mapping() {
    assert_eq!(
        set("dex: {}  # none yet\nb: 1\n", "dex.image.repository", "r/d"),
        "dex:  # none yet\n  image:\n    repository: r/d\nb: 1\n"
    );
    // Inside a flow collection block lines cannot go.
    let mut d = YamlDoc::parse("a: {b: {}}\n").unwrap();
    assert!(matches!(
        d.set(0, &p("a.b.c"), "v"),
        Err(EditError::FlowStyle { .. })
    ));
    let mut d = YamlDoc::parse("a: {b: ~}\n").unwrap();
    assert!(d.set(0, &p("a.b.c"), "v").is_err());
    assert_eq!(d.text(), "a: {b: ~}\n");
}

#[test]
fn empty_value_gets_a_value() {
    assert_eq!(set("a:\nb: 1\n", "a", "v"), "a: v\nb: 1\n");
}

#[test]
fn empty_and_comment_only_files() {
    assert_eq!(set("", "a.b", "v"), "a:\n  b: v\n");
    assert_eq!(set("# only a comment", "a", "v"), "# only a comment\na: v\n");
    assert_eq!(set("---\n", "a", "v"), "---\na: v\n");
}

#[test]
fn no_trailing_newline() {
    assert_eq!(set("a:\n  b: 1", "a.c", "v"), "a:\n  b: 1\n  c: v\n");
}

#[test]
fn document_markers_and_second_document() {
    let src = "---\nkind: Seed\n...\n---\nkind: KubermaticConfiguration\nspec:\n  x: 1\n";
    let mut d = YamlDoc::parse(src).unwrap();
    assert_eq!(d.document_count(), 2);
    d.set(1, &p("spec.z"), "v").unwrap();
    assert_eq!(
        d.text(),
        "---\nkind: Seed\n...\n---\nkind: KubermaticConfiguration\nspec:\n  x: 1\n  z: v\n"
    );
    verify_edits(
        src,
        d.text(),
        &[Intended {
            doc: 1,
            path: p("spec.z"),
            value: "v".into(),
        }],
    )
    .unwrap();
    assert!(matches!(
        d.set(2, &p("a"), "v"),
        Err(EditError::NoSuchDocument(2))
    ));
}

#[test]
fn flow_parents_and_aliases_are_refused() {
    let mut d = YamlDoc::parse("a: {x: 1}\n").unwrap();
    assert!(matches!(
        d.set(0, &p("a.y"), "v"),
        Err(EditError::FlowStyle { line: 1, .. })
    ));
    // Splicing a scalar inside a flow mapping is fine.
    assert!(d.set(0, &p("a.x"), "v").unwrap());
    assert_eq!(d.text(), "a: {x: v}\n");
    let mut d = YamlDoc::parse("a: {x: 1}\n").unwrap();
    d.set(0, &p("a.x"), "r,s").unwrap();
    assert_eq!(d.text(), "a: {x: \"r,s\"}\n");

    let src = "base: &img\n  repository: q/x\nchart:\n  image: *img\nv: &v s\nw: *v\n";
    let mut d = YamlDoc::parse(src).unwrap();
    assert!(matches!(
        d.set(0, &p("chart.image.repository"), "r"),
        Err(EditError::Alias { line: 4, .. })
    ));
    assert!(matches!(d.set(0, &p("w"), "r"), Err(EditError::Alias { .. })));
    assert!(matches!(
        d.set(0, &p("v"), "r"),
        Err(EditError::Anchored { line: 5, .. })
    ));
    // Editing inside the anchored mapping is allowed, and the safety net sees the alias change too.
    d.set(0, &p("base.repository"), "r").unwrap();
    let err = verify_edits(
        src,
        d.text(),
        &[Intended {
            doc: 0,
            path: p("base.repository"),
            value: "r".into(),
        }],
    );
    assert!(matches!(err, Err(EditError::Verify(m)) if m.contains("chart.image.repository")));
}

#[test]
fn block_scalars_and_wrong_kinds_are_refused() {
    let mut d = YamlDoc::parse("a: |\n  x\nb: [1]\nc: s\n").unwrap();
    assert!(matches!(
        d.set(0, &p("a"), "v"),
        Err(EditError::BlockScalar { .. })
    ));
    assert!(matches!(
        d.set(0, &p("b"), "v"),
        Err(EditError::WrongKind {
            found: "sequence",
            ..
        })
    ));
    assert!(matches!(
        d.set(0, &p("c.d"), "v"),
        Err(EditError::WrongKind { found: "scalar", .. })
    ));
    assert!(matches!(YamlDoc::parse("a: [\n"), Err(EditError::Parse { .. })));
}

#[test]
fn verify_catches_unintended_changes() {
    let err = verify_edits("a: 1\nb: 2\n", "a: 1\nb: 3\n", &[]).unwrap_err();
    assert_eq!(
        err,
        EditError::Verify("document 0: b changed but was not meant to".into())
    );
    let err = verify_edits("a: 1\n", "a: 1\nc: x\n", &[]).unwrap_err();
    assert_eq!(
        err,
        EditError::Verify("document 0: c changed but was not meant to".into())
    );
    verify_edits(
        "a: 1\n",
        "a: 1\nc: x\n",
        &[Intended {
            doc: 0,
            path: p("c"),
            value: "x".into(),
        }],
    )
    .unwrap();
}

#[test]
fn plain_safety() {
    for ok in [
        "quay.io/kubermatic/kubermatic",
        "reg.local:5000/kkp",
        "a-b",
        "v1.2.3",
        "localhost:5000/x",
    ] {
        assert!(plain_safe(ok), "{ok}");
    }
    for bad in [
        "", "true", "No", "1.5", "0x1f", "12:30", "~", "-x", "a: b", "a #b", "*x", "'q", " x", "x ", "{a}",
    ] {
        assert!(!plain_safe(bad), "{bad}");
    }
}

fn arb_doc() -> impl Strategy<Value = String> {
    let key = "[a-z][a-zA-Z0-9-]{0,8}";
    let scalar = prop_oneof![
        "[a-z0-9][a-z0-9./-]{0,11}".prop_map(|s| s),
        "[ -~]{0,10}".prop_map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
        "[ -~]{0,10}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
    ];
    let comment = prop_oneof![
        Just(String::new()),
        "[ -~]{0,10}".prop_map(|c| format!("  # {c}"))
    ];
    let eol = prop_oneof![Just("\n"), Just("\r\n")];
    (
        prop::collection::vec((key, scalar, comment, prop::bool::ANY, prop::bool::ANY), 1..8),
        eol,
        prop::bool::ANY,
    )
        .prop_map(|(entries, eol, bom)| {
            let mut s = String::new();
            if bom {
                s.push('\u{feff}');
            }
            let mut seen = HashSet::new();
            for (i, (k, v, c, nest, blank)) in entries.into_iter().enumerate() {
                if !seen.insert(k.clone()) {
                    continue;
                }
                if nest {
                    s.push_str(&format!("{k}:{eol}  inner{i}: {v}{c}{eol}"));
                } else {
                    s.push_str(&format!("{k}: {v}{c}{eol}"));
                }
                if blank {
                    s.push_str(eol);
                }
            }
            s
        })
}

proptest! {
    #[test]
    fn unchanged_document_round_trips(doc in arb_doc()) {
        let d = YamlDoc::parse(doc.clone()).unwrap();
        prop_assert_eq!(d.text(), doc.as_str());
    }

    #[test]
    fn set_then_reparse_gives_the_value(doc in arb_doc(), value in "[ -~]{0,16}", pick in 0usize..8, deep in prop::bool::ANY) {
        let d0 = YamlDoc::parse(doc.clone()).unwrap();
        let root = d0.docs[0].root.as_ref().unwrap();
        let Kind::Map { entries, .. } = &root.kind else { unreachable!() };
        let (k, v) = &entries[pick % entries.len()];
        let Kind::Scalar { value: key, .. } = &k.kind else { unreachable!() };
        let mut path = YamlPath::keys([key.clone()]);
        if let Kind::Map { entries: inner, .. } = &v.kind {
            let Kind::Scalar { value: ik, .. } = &inner[0].0.kind else { unreachable!() };
            path = path.child(ik);
        }
        if deep {
            path = path.child("new").child("leaf");
            if d0.get_str(0, &path.0[..path.len() - 2].to_vec().into_path()).is_some() {
                // A scalar cannot get children.
                return Ok(());
            }
        }
        let mut d = d0.clone();
        match d.set(0, &path, &value) {
            Ok(_) => {}
            Err(EditError::WrongKind { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        prop_assert_eq!(d.get_str(0, &path), Some(value.as_str()));
        let again = YamlDoc::parse(d.text().to_string()).unwrap();
        prop_assert_eq!(again.get_str(0, &path), Some(value.as_str()));
        verify_edits(&doc, d.text(), &[Intended { doc: 0, path: path.clone(), value: Scalar::Str(value.clone()) }])
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", d.text())))?;
        // Every byte outside the edited scalar is kept; an insertion removes nothing.
        let (a, b) = (doc.as_bytes(), d.text().as_bytes());
        let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let suf = a.iter().rev().zip(b.iter().rev()).take_while(|(x, y)| x == y).count();
        let old_changed = pre.min(a.len())..(a.len() - suf.min(a.len() - pre.min(a.len())));
        match d0.lookup(0, &path) {
            _ if a == b => {}
            Ok(Lookup::Found(node)) => {
                let line_end = d0.line_end(node.span.start);
                prop_assert!(old_changed.start >= node.span.start && old_changed.end <= node.span.end.max(line_end),
                    "changed {:?} outside scalar {:?}", old_changed, node.span);
            }
            _ => prop_assert!(old_changed.is_empty(), "insertion changed {:?}", old_changed),
        }
    }
}

trait IntoPath {
    fn into_path(self) -> YamlPath;
}
impl IntoPath for Vec<Seg> {
    fn into_path(self) -> YamlPath {
        YamlPath(self)
    }
}

/// Found by `tests/fuzz_props.rs`: a value with a control character spliced over a single-quoted scalar
/// was written between single quotes, where YAML cannot carry it, so the edit was refused as invalid YAML.
#[test]
fn control_character_in_single_quoted_value_is_double_quoted() {
    for (value, want) in [("\u{e}", "a: \"\\u000e\"\n"), ("x\u{7f}", "a: \"x\\u007f\"\n")] {
        let mut d = YamlDoc::parse("a: 'old'\n").unwrap();
        assert!(d.set(0, &YamlPath::keys(["a"]), value).unwrap());
        assert_eq!(d.text(), want);
        assert_eq!(
            YamlDoc::parse(d.text())
                .unwrap()
                .get_str(0, &YamlPath::keys(["a"])),
            Some(value)
        );
    }
    // A non-character outside the Basic Multilingual Plane's printable range is escaped, not written raw.
    let mut d = YamlDoc::parse("a: old\n").unwrap();
    d.set(0, &YamlPath::keys(["a"]), "\u{fffe}").unwrap();
    assert_eq!(d.text(), "a: \"\\ufffe\"\n");
}

/// Found by the `yaml_edit` fuzz target: a plain scalar over two lines becomes one line when set, which
/// a "one line changed" check took for damage; the span says which lines the value held.
#[test]
fn a_multi_line_plain_value_is_replaced_within_its_span() {
    let text = "a:\n bdK  :&x\n   ;\nb: 1\n";
    let mut d = YamlDoc::parse(text).unwrap();
    let span = d.span(0, &p("a")).unwrap();
    assert_eq!(&text[span.clone()], "bdK  :&x\n   ;");
    assert_eq!(d.span(0, &p("missing")), None);
    d.set(0, &p("a"), "v").unwrap();
    assert_eq!(d.text(), "a:\n v\nb: 1\n");
}

/// Sets a boolean and returns the text, checking it reads back.
fn set_bool(text: &str, path: &str, b: bool) -> (String, bool) {
    let mut d = YamlDoc::parse(text).unwrap();
    let changed = d.set_value(0, &p(path), &Scalar::Bool(b)).unwrap();
    assert_eq!(d.get_bool(0, &p(path)), Some(b));
    (d.into_text(), changed)
}

#[test]
fn booleans_are_written_plain_and_a_rerun_keeps_them() {
    // Missing: inserted beside its siblings, plain, comments kept.
    let text = "spec:\n  # the charts\n  helmRepository: oci://reg/charts # ours\n";
    let (out, changed) = set_bool(text, "spec.plainHTTP", true);
    assert!(changed);
    assert_eq!(
        out,
        "spec:\n  # the charts\n  helmRepository: oci://reg/charts # ours\n  plainHTTP: true\n"
    );
    let loaded = load_data(&out).unwrap();
    assert_eq!(loaded[0]["spec"]["plainHTTP"], serde_json::Value::Bool(true));
    // Already so: nothing changes.
    assert_eq!(set_bool(&out, "spec.plainHTTP", true), (out.clone(), false));
    // Another spelling of the same boolean is kept too.
    let upper = "a: True\n";
    assert_eq!(set_bool(upper, "a", true), (upper.to_string(), false));
    // The other boolean, a quoted string and a null become the plain boolean.
    assert_eq!(set_bool("a: false # no\n", "a", true).0, "a: true # no\n");
    assert_eq!(set_bool("a: \"true\"\n", "a", true).0, "a: true\n");
    assert_eq!(set_bool("a:\nb: 1\n", "a", false).0, "a: false\nb: 1\n");
    // Whole parents are created.
    assert_eq!(
        set_bool("x: 1\n", "s.u.p", true).0,
        "x: 1\ns:\n  u:\n    p: true\n"
    );
}

#[test]
fn booleans_refuse_what_strings_refuse() {
    let mut d = YamlDoc::parse("a: &x false\nb: *x\n").unwrap();
    assert!(matches!(
        d.set_value(0, &p("a"), &Scalar::Bool(true)),
        Err(EditError::Anchored { .. })
    ));
    let mut d = YamlDoc::parse("a: |\n  false\n").unwrap();
    assert!(matches!(
        d.set_value(0, &p("a"), &Scalar::Bool(true)),
        Err(EditError::BlockScalar { .. })
    ));
    let mut d = YamlDoc::parse("a: {b: 1}\n").unwrap();
    assert!(d.set_value(0, &p("a"), &Scalar::Bool(true)).is_err());
}
