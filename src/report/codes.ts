/**
 * The coded concepts written into SEG and SR, in one place. All of them were checked with
 * dciodvfy; DCM and UCUM codes are also in DCMTK's dcmsr/codes/*.h.
 */
export interface Code {
  CodeValue: string;
  CodingSchemeDesignator: string;
  CodeMeaning: string;
}

export const code = (value: string, scheme: string, meaning: string): Code => ({
  CodeValue: value,
  CodingSchemeDesignator: scheme,
  CodeMeaning: meaning,
});

export const Codes = {
  // segment (PS3.3 C.8.20.4)
  morphologicallyAbnormalStructure: code('49755003', 'SCT', 'Morphologically abnormal structure'),
  mass: code('4147007', 'SCT', 'Mass'),
  breast: code('76752008', 'SCT', 'Breast'),
  laterality: code('272741003', 'SCT', 'Laterality'),
  left: code('7771000', 'SCT', 'Left'),
  right: code('24028007', 'SCT', 'Right'),
  // derivation (PS3.3 C.7.6.1.1.3 / C.7.6.16.2.6)
  segmentation: code('113076', 'DCM', 'Segmentation'),
  sourceImageForProcessing: code('121322', 'DCM', 'Source image for image processing operation'),
  // TID 1500 Measurement Report and its included templates
  imagingMeasurementReport: code('126000', 'DCM', 'Imaging Measurement Report'),
  language: code('121049', 'DCM', 'Language of Content Item and Descendants'),
  englishUS: code('en-US', 'RFC5646', 'English (United States)'),
  observerType: code('121005', 'DCM', 'Observer Type'),
  device: code('121007', 'DCM', 'Device'),
  deviceObserverUid: code('121012', 'DCM', 'Device Observer UID'),
  deviceObserverName: code('121013', 'DCM', 'Device Observer Name'),
  deviceObserverManufacturer: code('121014', 'DCM', 'Device Observer Manufacturer'),
  deviceObserverModelName: code('121015', 'DCM', 'Device Observer Model Name'),
  procedureReported: code('121058', 'DCM', 'Procedure reported'),
  breastUltrasound: code('47079000', 'SCT', 'Ultrasonography of breast'),
  imageLibrary: code('111028', 'DCM', 'Image Library'),
  imageLibraryGroup: code('126200', 'DCM', 'Image Library Group'),
  imagingMeasurements: code('126010', 'DCM', 'Imaging Measurements'),
  measurementGroup: code('125007', 'DCM', 'Measurement Group'),
  trackingIdentifier: code('112039', 'DCM', 'Tracking Identifier'),
  trackingUid: code('112040', 'DCM', 'Tracking Unique Identifier'),
  finding: code('121071', 'DCM', 'Finding'),
  findingSite: code('363698007', 'SCT', 'Finding Site'),
  referencedSegment: code('121191', 'DCM', 'Referenced Segment'),
  sourceSeriesForSegmentation: code('121232', 'DCM', 'Source series for segmentation'),
  sourceImageForSegmentation: code('121233', 'DCM', 'Source image for segmentation'),
  qualitativeEvaluations: code('C0034375', 'UMLS', 'Qualitative Evaluations'),
  // concept name of the model's benign / malignant call: "Pathology", as in the Mammography CAD
  // SR templates (PS3.16 TID 4000 family), which use it for a finding's benign / malignant nature
  pathology: code('111042', 'DCM', 'Pathology'),
  benign: code('3898006', 'SCT', 'Neoplasm, benign'),
  malignant: code('86049000', 'SCT', 'Malignant neoplasm, primary'),
  probabilityOfCancer: code('111047', 'DCM', 'Probability of cancer'),
  longAxis: code('103339001', 'SCT', 'Long axis'),
  shortAxis: code('103340004', 'SCT', 'Short axis'),
  area: code('42798000', 'SCT', 'Area'),
  comment: code('121106', 'DCM', 'Comment'),
  // TID 2010 Key Object Selection: its title (CID 7010) and description
  ofInterest: code('113000', 'DCM', 'Of Interest'),
  keyObjectDescription: code('113012', 'DCM', 'Key Object Description'),
} as const;

export const Units = {
  mm: code('mm', 'UCUM', 'millimeter'),
  mm2: code('mm2', 'UCUM', 'square millimeter'),
  /** dimensionless: probabilities */
  one: code('1', 'UCUM', 'no units'),
  /** uncalibrated sizes: a UCUM annotation, as in DCMTK's CODE_UCUM_Pixels */
  pixels: code('{pixels}', 'UCUM', 'pixels'),
} as const;
