public enum SlipwayVersion { public static let string = "0.1.0" }
