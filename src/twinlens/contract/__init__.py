"""The plugin contract: what a domain declares (schemas, specs, samples, predictions, the
`Plugin` base class, errors, the registry) and the torch-free helpers every layer shares
(image decoding limits, bundle file checks, table and manifest reading). Nothing here
imports torch or anything above it, so the API, services and plugins can all depend on it.
"""
