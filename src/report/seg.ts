/**
 * DICOM Segmentation (PS3.3 A.51) of the lesion masks, built directly as a naturalized dataset:
 * dcmjs's Segmentation derivation assumes cross-sectional geometry that ultrasound lacks
 * (NOTES.md "Writing SEG and SR").
 */
import { FrameMasks } from '../postprocess/frameMasks';
import { Dataset, InstanceResult, ModelInfo } from '../types/domain';
import { Codes } from './codes';
import { BuildOptions, NOT_FOR_DIAGNOSIS, commonAttributes, imageReference, lateralityCode } from './common';
import { derivedUid } from './uids';

export const LESION_SEGMENT_NUMBER = 1;

/** CIELab of yellow scaled to 0..65535 (PS3.3 C.10.7.1.1): visible on grey ultrasound; the overlay uses the same colour. */
const YELLOW_CIELAB = [63661, 27357, 57177];

const SEGMENT_NUMBER_POINTER = 0x0062000b; // (0062,000B) Referenced Segment Number
const SEGMENT_IDENTIFICATION_POINTER = 0x0062000a; // (0062,000A) Segment Identification Sequence
const TEMPORAL_POSITION_POINTER = 0x00209128; // (0020,9128) Temporal Position Index
const FRAME_CONTENT_POINTER = 0x00209111; // (0020,9111) Frame Content Sequence

/**
 * BINARY segmentation pixels (PS3.3 C.8.20.2, PS3.5 8.1.1): one bit per pixel, least significant
 * bit first, as ONE continuous stream over all frames; a frame does not start on a byte boundary
 * when rows × columns is not a multiple of 8. Padded to an even length (PS3.5 7.1.1). The pipeline's
 * masks are kept in this form as they are found (postprocess/frameMasks.ts).
 */
export function packBinaryFrames(masks: Uint8Array[], pixelsPerFrame: number): Uint8Array {
  return FrameMasks.of(masks, pixelsPerFrame).packed();
}

/**
 * One SEG frame per source frame, empty ones included, so that viewers line up SEG frame n with
 * source frame n; one segment: the lesion, with the model's class in its label.
 */
export function buildSeg(source: Dataset, result: InstanceResult, model: ModelInfo, opts: BuildOptions = {}): Dataset {
  const rows = Number(source.Rows);
  const columns = Number(source.Columns);
  const frames = Number(source.NumberOfFrames ?? 1) || 1;
  if (result.masks.length !== frames) throw new Error(`SEG: ${result.masks.length} masks for ${frames} source frames`);
  if (result.masks.pixelsPerFrame !== rows * columns) throw new Error(`SEG: mask of ${result.masks.pixelsPerFrame} pixels for a ${columns}×${rows} source`);

  const ds = commonAttributes(source, model, 'seg', opts);
  const dimensionOrganizationUid = derivedUid('dimensions', ds.SOPInstanceUID);
  const side = lateralityCode(source);
  const region: Dataset = { ...Codes.breast };
  // dciodvfy rejects Laterality in a SEG (its General Series type 2C condition is not met there):
  // the side goes on the segment's anatomic region instead (PS3.3 C.8.20.4, Anatomic Region Modifier).
  if (side) region.AnatomicRegionModifierSequence = [side];

  const perFrame = Array.from({ length: frames }, (_, f) => ({
    DerivationImageSequence: [
      {
        SourceImageSequence: [{ ...imageReference(source, f), PurposeOfReferenceCodeSequence: [Codes.sourceImageForProcessing] }],
        DerivationCodeSequence: [Codes.segmentation],
      },
    ],
    FrameContentSequence: [{ DimensionIndexValues: [LESION_SEGMENT_NUMBER, f + 1], TemporalPositionIndex: f + 1 }],
  }));

  return {
    ...ds,
    ImageType: ['DERIVED', 'PRIMARY'],
    // the source's body part, or none: an image the scanner did not call breast is not made one here
    ...(source.BodyPartExamined ? { BodyPartExamined: source.BodyPartExamined } : {}),
    // General Image module: type 2C, required without a Frame of Reference; empty is allowed
    PatientOrientation: '',
    // Common Instance Reference module (PS3.3 C.12.2): same study, so no Study Instance UID here
    ReferencedSeriesSequence: [
      {
        SeriesInstanceUID: source.SeriesInstanceUID,
        ReferencedInstanceSequence: [imageReference(source)],
      },
    ],
    // Segmentation Image module (PS3.3 C.8.20.2)
    ContentLabel: 'LESION',
    ContentDescription: NOT_FOR_DIAGNOSIS,
    ContentCreatorName: '',
    SegmentationType: 'BINARY',
    LossyImageCompression: '00',
    SegmentSequence: [
      {
        SegmentNumber: LESION_SEGMENT_NUMBER,
        SegmentLabel: `Lesion (${result.label})`,
        SegmentDescription: `Lesion, classified ${result.label} by ${model.name} ${model.version}. ${NOT_FOR_DIAGNOSIS}`,
        SegmentAlgorithmType: 'AUTOMATIC',
        SegmentAlgorithmName: model.name,
        SegmentedPropertyCategoryCodeSequence: [Codes.morphologicallyAbnormalStructure],
        SegmentedPropertyTypeCodeSequence: [Codes.mass],
        AnatomicRegionSequence: [region],
        RecommendedDisplayCIELabValue: YELLOW_CIELAB,
      },
    ],
    // Multi-frame Dimension module (PS3.3 C.7.6.17): without patient geometry, a frame is
    // identified by its segment and its source frame
    DimensionOrganizationSequence: [{ DimensionOrganizationUID: dimensionOrganizationUid }],
    DimensionIndexSequence: [
      {
        DimensionOrganizationUID: dimensionOrganizationUid,
        DimensionIndexPointer: SEGMENT_NUMBER_POINTER,
        FunctionalGroupPointer: SEGMENT_IDENTIFICATION_POINTER,
        DimensionDescriptionLabel: 'Segment Number',
      },
      {
        DimensionOrganizationUID: dimensionOrganizationUid,
        DimensionIndexPointer: TEMPORAL_POSITION_POINTER,
        FunctionalGroupPointer: FRAME_CONTENT_POINTER,
        DimensionDescriptionLabel: 'Source Frame',
      },
    ],
    // Every frame belongs to the one lesion segment, so Segment Identification is shared
    // (PS3.3 C.7.6.16). This also keeps the item non-empty: an empty item does not survive
    // re-encoding by some toolkits (dcmjs-dimse drops it on send), and dciodvfy then rejects it.
    SharedFunctionalGroupsSequence: [{ SegmentIdentificationSequence: [{ ReferencedSegmentNumber: LESION_SEGMENT_NUMBER }] }],
    PerFrameFunctionalGroupsSequence: perFrame,
    NumberOfFrames: frames,
    SamplesPerPixel: 1,
    PhotometricInterpretation: 'MONOCHROME2',
    Rows: rows,
    Columns: columns,
    BitsAllocated: 1,
    BitsStored: 1,
    HighBit: 0,
    PixelRepresentation: 0,
    PixelData: [result.masks.packed().buffer],
    _vrMap: { PixelData: 'OB' },
  };
}
