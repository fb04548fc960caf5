//! The models: torchvision's parameter names and shapes, channels-last weights
//! that compute what contiguous ones do, and bf16 compute against float32
//! master weights.
#![allow(clippy::unwrap_used)]

use fnc_train::{
    is_channels_last, normalise_as, to_channels_last, Arch, Model, Optimizer, OptimizerKind,
};
use tch::nn;

use tch::{Device, Kind, Tensor};

fn build(arch: Arch) -> (nn::VarStore, Model) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Model::new(&vs.root(), arch, 32);
    (vs, model)
}

fn images(n: i64, side: i64) -> Tensor {
    tch::manual_seed(1);
    Tensor::randint(256, [n, side, side, 3], (Kind::Uint8, Device::Cpu))
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

#[test]
fn resnet_variables_carry_torchvision_names_and_shapes() {
    let (vs, _) = build(Arch::Resnet50);
    let vars = vs.variables();
    let shape = |n: &str| vars.get(n).unwrap_or_else(|| panic!("no {n}")).size();
    assert_eq!(shape("conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape("layer1.0.conv1.weight"), [64, 64, 1, 1]);
    assert_eq!(shape("layer1.0.downsample.0.weight"), [256, 64, 1, 1]);
    assert_eq!(shape("layer2.0.conv2.weight"), [128, 128, 3, 3]);
    assert_eq!(shape("layer4.2.bn3.running_var"), [2048]);
    assert_eq!(shape("head.0.weight"), [2048, 2048]);
    assert_eq!(shape("head.7.bias"), [32]);
    assert!(!vars.contains_key("layer1.1.downsample.0.weight"));
    // torchvision's ResNet-50 has 161 parameters, 159 without fc.*, and 53
    // BatchNorms with two running statistics each (num_batches_tracked is
    // added on export).
    let encoder = vars.keys().filter(|k| !k.starts_with("head.")).count();
    assert_eq!(encoder, 159 + 2 * 53);
    // BatchNorm starts as the identity map, as torchvision's does.
    assert!(vars["bn1.weight"].eq(1.0).all().int64_value(&[]) == 1);

    let (vs, _) = build(Arch::Resnet18);
    let vars = vs.variables();
    assert_eq!(
        vars["layer3.0.downsample.0.weight"].size(),
        [256, 128, 1, 1]
    );
    assert_eq!(vars["layer4.1.conv2.weight"].size(), [512, 512, 3, 3]);
    let encoder = vars.keys().filter(|k| !k.starts_with("head.")).count();
    assert_eq!(encoder, 60 + 2 * 20);
}

#[test]
fn channels_last_weights_compute_what_contiguous_ones_do() {
    let (vs, model) = build(Arch::Resnet18);
    let x = images(4, 64);
    let want = tch::no_grad(|| model.project(&normalise_as(&x, Kind::Float, false), false));
    let input = normalise_as(&x, Kind::Float, true);
    assert!(is_channels_last(&input));
    assert!(!is_channels_last(&normalise_as(&x, Kind::Float, false)));
    to_channels_last(&vs);
    let w = &vs.variables()["layer1.0.conv1.weight"];
    assert!(is_channels_last(w), "strides {:?}", w.stride());
    let got = tch::no_grad(|| model.project(&input, false));
    assert!(max_rel(&got, &want) < 1e-4, "{}", max_rel(&got, &want));
    // Gradients and optimiser state follow the weights' layout; a step works.
    let mut opt = Optimizer::new(
        OptimizerKind::Lars,
        vs.trainable_variables()
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("{i:04}"), t))
            .collect(),
        1e-4,
    );
    let loss = model.project(&input, true).square().mean(Kind::Float);
    let grads = opt.gradients(&loss).unwrap();
    opt.step(&grads, 0.1);
    assert!(w.isfinite().all().int64_value(&[]) == 1);
}

#[test]
fn bf16_runs_against_float32_weights_and_stays_close() {
    let (vs, model) = build(Arch::Resnet18);
    let x = images(8, 64);
    let f32_in = normalise_as(&x, Kind::Float, true);
    let bf16_in = normalise_as(&x, Kind::BFloat16, true);
    assert_eq!(bf16_in.kind(), Kind::BFloat16);
    let a = model.project(&f32_in, true);
    // The encoder runs in bfloat16; the embeddings leave the head in float32.
    assert_eq!(model.features(&bf16_in, true).kind(), Kind::BFloat16);
    let b = model.project(&bf16_in, true);
    assert_eq!(b.kind(), Kind::Float);
    // Per-row cosine of the two projections.
    let cos = (&a * &b).sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        / (a.norm_scalaropt_dim(2, [1i64].as_slice(), false)
            * b.norm_scalaropt_dim(2, [1i64].as_slice(), false));
    let worst = cos.min().double_value(&[]);
    assert!(
        worst > 0.98,
        "bf16 projections drift from float32: cos {worst}"
    );
    // Gradients land on the float32 master weights, close to float32's. (A
    // fixed direction of the features, not of the projection: the head's
    // last BatchNorm makes simple functions of its output constant.)
    let w = vs.variables()["layer2.0.conv1.weight"].shallow_clone();
    assert_eq!(w.kind(), Kind::Float);
    tch::manual_seed(2);
    let r = Tensor::randn([512], (Kind::Float, Device::Cpu));
    let grad = |input: &Tensor| {
        let f = model.features(input, true).to_kind(Kind::Float);
        let loss = (f * &r).sum(Kind::Float);
        Tensor::run_backward(&[loss], &[&w], false, false).remove(0)
    };
    let (ga, gb) = (grad(&f32_in), grad(&bf16_in));
    assert_eq!(gb.kind(), Kind::Float);
    let cos = (&ga * &gb).sum(Kind::Double).double_value(&[])
        / (ga.norm().double_value(&[]) * gb.norm().double_value(&[]));
    // PyTorch's CPU bf16 autocast gets cos 0.89-0.90 on this setup (ResNet-18
    // at init, 8 images of 64 px); a wrong cast or a lost gradient path falls
    // far below.
    assert!(cos > 0.8, "bf16 gradient direction differs: cos {cos}");
    let ratio = gb.norm().double_value(&[]) / ga.norm().double_value(&[]);
    assert!(
        (ratio - 1.0).abs() < 0.1,
        "bf16 gradient norm ratio {ratio}"
    );
}

#[test]
fn small_cnn_keeps_its_sequential_names() {
    let (vs, model) = build(Arch::Small);
    let vars = vs.variables();
    for k in [
        "features.0.weight",
        "features.1.running_mean",
        "features.9.weight",
        "features.10.bias",
    ] {
        assert!(vars.contains_key(k), "no {k}");
    }
    let y = model
        .encoder
        .forward_t(&normalise_as(&images(2, 32), Kind::Float, true), false);
    assert_eq!(y.size(), [2, 128]);
}

#[test]
fn the_reference_initialisation_is_the_official_codes() {
    for (arch, last) in [(Arch::Resnet18, "bn2"), (Arch::Resnet50, "bn3")] {
        let cfg = fnc_train::TrainConfig {
            arch,
            init: fnc_train::InitScheme::Reference,
            memory_format: fnc_train::MemoryFormat::Contiguous,
            ..fnc_train::TrainConfig::default()
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let _model = fnc_train::build_model(&vs, &cfg.model_spec(Device::Cpu));
        let vars = vs.variables();
        let std = |t: &Tensor| t.to_kind(Kind::Double).std(true).double_value(&[]);
        let mut zeroed = 0;
        for (name, t) in &vars {
            if name.starts_with("layer") && name.ends_with(&format!(".{last}.weight")) {
                assert!(t.eq(0.0).all().int64_value(&[]) == 1, "{name} starts at 0");
                zeroed += 1;
            } else if name.ends_with("bn1.weight") {
                assert!(t.eq(1.0).all().int64_value(&[]) == 1, "{name}");
            }
        }
        assert_eq!(
            zeroed,
            if arch == Arch::Resnet18 { 8 } else { 16 },
            "one per block"
        );
        // Variance scaling, fan-in: std sqrt(1 / fan_in), truncated at 2 of
        // the underlying normal's std (1.14 x the result's).
        let w = &vars["layer4.0.conv2.weight"];
        let s = w.size();
        let want = (1.0 / (s[1] * s[2] * s[3]) as f64).sqrt();
        assert!((std(w) / want - 1.0).abs() < 0.02, "{} vs {want}", std(w));
        let bound = 2.0 * want / 0.879_625_661_034_239_8;
        assert!(w.abs().max().double_value(&[]) <= bound * 1.0001);
        // The head: N(0, 0.01) weights; no shift on its last BatchNorm.
        assert!((std(&vars["head.3.weight"]) / 0.01 - 1.0).abs() < 0.02);
        let shift = &vars["head.7.bias"];
        assert!(shift.eq(0.0).all().int64_value(&[]) == 1 && !shift.requires_grad());
        assert!(
            vars["head.4.bias"].requires_grad(),
            "hidden BatchNorms keep their shift"
        );
        let names: Vec<String> = fnc_train::trainable(&vs)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(!names.contains(&"head.7.bias".to_string()));
    }
    // The default is torchvision's.
    let vs = nn::VarStore::new(Device::Cpu);
    let _ = fnc_train::build_model(
        &vs,
        &fnc_train::TrainConfig::default().model_spec(Device::Cpu),
    );
    assert!(
        vs.variables()["layer1.0.bn3.weight"]
            .eq(1.0)
            .all()
            .int64_value(&[])
            == 1
    );
}

#[test]
fn head_layers_are_the_prefixes_of_the_projection_head() {
    let (_vs, m) = build(Arch::Small);
    let d = Arch::Small.feature_dim();
    use tch::nn::ModuleT;
    let x = Tensor::randn([6, d], (Kind::Float, Device::Cpu));
    let full = m.head.forward_t(&x, false);
    assert_eq!(max_rel(&m.head.forward_layers(&x, 3, false), &full), 0.0);
    assert_eq!(max_rel(&m.head.forward_layers(&x, 0, false), &x), 0.0);
    let one = m.head.forward_layers(&x, 1, false);
    assert_eq!(one.size(), vec![6, d], "the first layer keeps the width");
    assert!(
        one.min().double_value(&[]) >= 0.0,
        "ReLU after the first layer"
    );
    assert!(max_rel(&one, &x) > 0.1, "the layer does something");
}

#[test]
fn lars_leaves_exempt_parameters_unadapted() {
    let w = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
    let params = [w.copy(), w.copy()];
    let named = vec![
        ("classifier.weight".to_string(), params[0].shallow_clone()),
        ("layer.weight".to_string(), params[1].shallow_clone()),
    ];
    let mut opt = Optimizer::new(OptimizerKind::Lars, named, 0.1).exempt("classifier.");
    let g = Tensor::full([4, 4], 0.5, (Kind::Float, Device::Cpu));
    opt.step(&[g.copy(), g.copy()], 1.0);
    // Exempt: plain momentum SGD without decay, p - lr g.
    let exempt = params[0].mean(Kind::Float).double_value(&[]);
    assert!((exempt - 0.5).abs() < 1e-6, "{exempt}");
    // Adapted: g + wd p scaled by the trust ratio 0.001 |p| / |g + wd p|.
    let adapted = params[1].mean(Kind::Float).double_value(&[]);
    let ratio = 0.001 * 4.0 / (0.6 * 4.0);
    assert!((adapted - (1.0 - 0.6 * ratio)).abs() < 1e-6, "{adapted}");
}
