// The recipe reader (docs/fuzzing.md): `Recipe.load`, as `slipway build` reads a recipe
// (TOML through TOMLKit, then every table and key checked). scripts/fuzz adds recipes/*.toml
// to the seeds.
import Foundation
import FuzzSupport
import SlipwayRecipe

FuzzTarget.run(
    setUp: { try Scratch() },
    seeds: { _ in
        [
            "minimal.toml": Data("""
                [release]
                name = "app"
                version = "1.0"

                [base]
                suite = "bookworm"
                """.utf8),
        ]
    },
    body: { scratch, bytes in
        let path = scratch.write(bytes, to: "recipe.toml")
        _ = try? Recipe.load(path: path)
        _ = try? Recipe.load(path: path, variables: ["version": "2.0"])
    })
