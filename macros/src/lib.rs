//! `#[pollwatch::test]`, re-exported by the `pollwatch` crate (feature
//! `macros`); see its documentation there. This crate only rewrites the
//! test function: the runtime, the guard and the check live in `pollwatch`.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, Meta, Token};

/// A tokio test that fails if its runtime blocks; see `pollwatch::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    match expand(args.into(), item.into()) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What the attribute's arguments ask for.
#[derive(Debug, Default, PartialEq)]
struct Args {
    multi_thread: bool,
    worker_threads: Option<usize>,
    threshold_ms: Option<f64>,
}

fn parse_args(args: proc_macro2::TokenStream) -> syn::Result<Args> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut out = Args::default();
    let mut flavor_span = None;
    for meta in metas {
        let Meta::NameValue(nv) = &meta else {
            return Err(syn::Error::new(
                meta.span(),
                "expected `name = value`: flavor, worker_threads or threshold_ms",
            ));
        };
        let name = nv
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let lit = match &nv.value {
            Expr::Lit(ExprLit { lit, .. }) => lit,
            other => return Err(syn::Error::new(other.span(), "expected a literal")),
        };
        match (name.as_str(), lit) {
            ("flavor", Lit::Str(s)) => {
                out.multi_thread = match s.value().as_str() {
                    "multi_thread" => true,
                    "current_thread" => false,
                    _ => {
                        return Err(syn::Error::new(
                            s.span(),
                            "flavor is \"current_thread\" or \"multi_thread\"",
                        ))
                    }
                };
                flavor_span = Some(s.span());
            }
            ("worker_threads", Lit::Int(n)) => {
                let n: usize = n.base10_parse()?;
                if n == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "worker_threads must be at least 1",
                    ));
                }
                out.worker_threads = Some(n);
            }
            ("threshold_ms", Lit::Int(n)) => {
                out.threshold_ms = Some(n.base10_parse::<u64>()? as f64)
            }
            ("threshold_ms", Lit::Float(f)) => out.threshold_ms = Some(f.base10_parse()?),
            ("flavor" | "worker_threads" | "threshold_ms", _) => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("wrong kind of value for {name}"),
                ))
            }
            _ => {
                return Err(syn::Error::new(
                    nv.path.span(),
                    format!(
                    "unknown argument `{name}`: expected flavor, worker_threads or threshold_ms"
                ),
                ))
            }
        }
    }
    if out.worker_threads.is_some() && !out.multi_thread {
        return Err(syn::Error::new(
            flavor_span.unwrap_or_else(Span::call_site),
            "worker_threads needs flavor = \"multi_thread\"",
        ));
    }
    Ok(out)
}

fn expand(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    let args = parse_args(args)?;
    let mut f: ItemFn = syn::parse2(item)?;
    if f.sig.asyncness.is_none() {
        return Err(syn::Error::new(
            f.sig.fn_token.span(),
            "#[pollwatch::test] needs an `async fn`",
        ));
    }
    if !f.sig.inputs.is_empty() {
        return Err(syn::Error::new(
            f.sig.inputs.span(),
            "a test function takes no arguments",
        ));
    }
    let name = &f.sig.ident;
    let name_str = name.to_string();
    let flavor = if args.multi_thread {
        quote!(::pollwatch::__private::Flavor::MultiThread)
    } else {
        quote!(::pollwatch::__private::Flavor::CurrentThread)
    };
    let workers = match args.worker_threads {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let threshold = match args.threshold_ms {
        Some(ms) => quote!(::core::option::Option::Some(#ms)),
        None => quote!(::core::option::Option::None),
    };
    // The body becomes an inner async fn of the same name and signature, so
    // `?` and `return` keep their meaning and stacks name the test.
    let mut inner = f.sig.clone();
    inner.ident = name.clone();
    let body = &f.block;
    let attrs = std::mem::take(&mut f.attrs);
    f.sig.asyncness = None;
    let outer_sig = &f.sig;
    let vis = &f.vis;
    // Spanned at the body so `watch`'s `#[track_caller]` location (the
    // episode's `spawned_at`) is the test's own file and line.
    let watched = quote_spanned!(body.span()=> ::pollwatch::watch(#name()));
    Ok(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #outer_sig {
            #inner #body
            ::pollwatch::__private::run_test(
                ::pollwatch::__private::TestSpec {
                    name: ::core::concat!(::core::module_path!(), "::", #name_str),
                    flavor: #flavor,
                    worker_threads: #workers,
                    threshold_ms: #threshold,
                },
                #watched,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    // Not a glob: this crate's own `test` attribute would shadow the built-in one.
    use super::{expand, parse_args, Args};
    use quote::quote;

    fn args(s: &str) -> syn::Result<Args> {
        parse_args(s.parse().unwrap())
    }

    #[test]
    fn arguments_are_parsed() {
        assert_eq!(args("").unwrap(), Args::default());
        let a = args(r#"flavor = "multi_thread", worker_threads = 2, threshold_ms = 5"#).unwrap();
        assert_eq!(
            a,
            Args {
                multi_thread: true,
                worker_threads: Some(2),
                threshold_ms: Some(5.0)
            }
        );
        assert_eq!(args("threshold_ms = 2.5").unwrap().threshold_ms, Some(2.5));
    }

    #[test]
    fn bad_arguments_say_what_is_expected() {
        let msg = |s: &str| args(s).unwrap_err().to_string();
        assert!(msg(r#"flavor = "fast""#).contains("current_thread"));
        assert!(msg("worker_threads = 2").contains("multi_thread"));
        assert!(msg(r#"flavor = "multi_thread", worker_threads = 0"#).contains("at least 1"));
        assert!(msg("threshold = 5").contains("unknown argument `threshold`"));
        assert!(msg(r#"threshold_ms = "5""#).contains("wrong kind"));
        assert!(msg("flavor").contains("name = value"));
    }

    #[test]
    fn a_sync_fn_is_refused() {
        let e = expand(
            quote!(),
            quote!(
                fn t() {}
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("async fn"), "{e}");
        let e = expand(
            quote!(),
            quote!(
                async fn t(x: u8) {}
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no arguments"), "{e}");
    }

    #[test]
    fn other_attributes_pass_through() {
        let out = expand(
            quote!(),
            quote!(
                #[should_panic(expected = "boom")]
                #[ignore]
                async fn t() {}
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("should_panic"), "{out}");
        assert!(out.contains("ignore"), "{out}");
        assert!(out.contains(":: core :: prelude :: v1 :: test"), "{out}");
    }
}
